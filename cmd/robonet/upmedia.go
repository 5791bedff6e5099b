package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/robonet-mesh/robonet/gateway"
	"github.com/robonet-mesh/robonet/media"
	"github.com/robonet-mesh/robonet/node"
	"github.com/robonet-mesh/robonet/wire"
)

// defaultMediaUDP is the one UDP port of WebRTC media (DESIGN, ports).
const defaultMediaUDP = "0.0.0.0:8341"

// mediaFlags are up's media settings.
type mediaFlags struct {
	specs      []string
	udp        string
	hosts      []string
	linger     time.Duration
	maxViewers int
	ffmpeg     string
}

// addMediaFlags registers the media flags on f.
func addMediaFlags(f *pflag.FlagSet) *mediaFlags {
	mf := &mediaFlags{}
	f.StringArrayVar(&mf.specs, "media", nil, "streams this node offers: name=source[@WxH[@FPS]],… with source /dev/videoN (camera), :0 (screen), testsrc (test pattern) or clock (test pattern with the time as a barcode); default size 1280x720@30")
	f.StringVar(&mf.udp, "media-udp", defaultMediaUDP, "the one UDP port of WebRTC media (ICE-UDP mux), or off. The default, when taken (two nodes on one host), is skipped with a log line: viewers then use the relay")
	f.StringSliceVar(&mf.hosts, "media-host", nil, "IP addresses to advertise for the media port instead of the interfaces' (a NAT's public address)")
	f.DurationVar(&mf.linger, "media-linger", media.DefaultLinger, "keep a stream's encoder running this long after its last viewer leaves")
	f.IntVar(&mf.maxViewers, "media-max-viewers", 64, "WebRTC sessions this node serves at most (each stream's encoder is shared by all)")
	f.StringVar(&mf.ffmpeg, "ffmpeg", "ffmpeg", "the ffmpeg that captures and encodes the streams")
	return mf
}

// parsed returns the --media specs.
func (mf *mediaFlags) parsed() ([]media.Spec, error) {
	if len(mf.specs) == 0 {
		return nil, nil
	}
	specs, err := media.ParseSpecs(strings.Join(mf.specs, ","))
	if err != nil {
		return nil, fmt.Errorf("--media: %w", err)
	}
	return specs, nil
}

// check validates the flags before the node starts.
func (mf *mediaFlags) check() error {
	if _, err := mf.parsed(); err != nil {
		return err
	}
	if mf.udp != "off" {
		if _, _, err := net.SplitHostPort(mf.udp); err != nil {
			return fmt.Errorf("--media-udp %q: want host:port or off: %v", mf.udp, err)
		}
	}
	for _, h := range mf.hosts {
		if _, err := netip.ParseAddr(h); err != nil {
			return fmt.Errorf("--media-host %q: not an IP address", h)
		}
	}
	switch {
	case mf.linger < 0:
		return fmt.Errorf("--media-linger %s: want 0 or more", mf.linger)
	case mf.maxViewers < 1:
		return fmt.Errorf("--media-max-viewers %d: want at least 1", mf.maxViewers)
	}
	return nil
}

// composeMedia builds the WebRTC engine (the media UDP port, and ICE-TCP
// on the gateway's port when there is a gateway), serves this node's
// streams over the mesh and mounts WHEP on the gateway. The stop it
// returns closes media, then calls then, then closes the engine.
func composeMedia(ctx context.Context, cmd *cobra.Command, n *node.Node, g *gateway.Gateway, gm *gateway.Metrics, mf *mediaFlags, log *slog.Logger, then func(context.Context)) (func(context.Context), error) {
	specs, err := mf.parsed()
	if err != nil {
		return then, err
	}
	if len(specs) == 0 && g == nil {
		return then, nil // nothing to serve, nobody to watch through
	}
	w := cmd.OutOrStdout()
	var encs []*media.Encoder
	closeEncs := func() {
		for _, e := range encs {
			e.Close()
		}
	}
	for _, sp := range specs {
		e, err := media.NewEncoder(sp, media.EncoderOptions{FFmpeg: mf.ffmpeg, Linger: mf.linger, Logger: log})
		if err != nil {
			closeEncs()
			return then, fmt.Errorf("--media %s: %w", sp.Name, err)
		}
		encs = append(encs, e)
	}
	var udp net.PacketConn
	if mf.udp != "off" {
		udp, err = net.ListenPacket("udp4", mf.udp)
		switch {
		case err == nil:
		case mf.udp == defaultMediaUDP && errors.Is(err, syscall.EADDRINUSE):
			log.Warn("media UDP port taken: no direct WebRTC path on this node (viewers use the gateway's relay)", "addr", mf.udp)
			udp = nil
		default:
			closeEncs()
			return then, fmt.Errorf("--media-udp %s: %w", mf.udp, err)
		}
	}
	loopback := false
	if udp != nil {
		if a, ok := udp.LocalAddr().(*net.UDPAddr); ok && a.IP.IsLoopback() {
			loopback = true // bound to loopback: loopback is all it can reach
		}
	}
	cfg := media.EngineConfig{UDP: udp, HostIPs: mf.hosts, Loopback: loopback, Logger: log}
	if g != nil {
		cfg.TCP = g.ICETCP()
		// A gateway on every interface gives pion no address for its TCP
		// candidates: advertise the host's (or --media-host's).
		if h, _, err := net.SplitHostPort(g.Addr()); err == nil && cfg.TCP != nil {
			if ip, err := netip.ParseAddr(h); err == nil && ip.IsUnspecified() {
				cfg.TCPAdvertise = mf.hosts
				if len(cfg.TCPAdvertise) == 0 {
					for _, c := range interfaceCIDRs(false) {
						cfg.TCPAdvertise = append(cfg.TCPAdvertise, strings.SplitN(c, "/", 2)[0])
					}
				}
			}
		}
	}
	var eng *media.Engine
	if cfg.UDP != nil || cfg.TCP != nil {
		if eng, err = media.NewEngine(cfg); err != nil {
			closeEncs()
			if udp != nil {
				udp.Close()
			}
			return then, fmt.Errorf("media: %w", err)
		}
	}
	var svc *media.Service
	var fc *nats.Conn
	if len(specs) > 0 {
		if fc, err = n.FeatureConn("media"); err != nil {
			closeEncs()
			closeEngine(eng, udp)
			return then, fmt.Errorf("media: %w", err)
		}
		udpPort := 0
		if a, ok := udpAddr(udp); ok {
			udpPort = a.Port
		}
		svc, err = media.NewService(media.ServiceOptions{
			Conn: fc, Chevron: n.Chevron(), Signer: n.Signer(), Encoders: encs, Engine: eng, Logger: log,
			Sessions: media.SessionOptions{MaxSessions: mf.maxViewers},
			UDPPort:  udpPort, Addrs: interfaceCIDRs(loopback),
			Authorize: func(m *nats.Msg) (string, int, *wire.Error) {
				pub, role, werr := n.Authorize(m, "")
				if werr != nil || pub == "" {
					return pub, 0, werr
				}
				return pub, n.Tier(role, pub), nil
			},
		})
		if err == nil {
			err = svc.Start()
		}
		if err != nil {
			closeEncs()
			fc.Close()
			closeEngine(eng, udp)
			return then, fmt.Errorf("media: %w", err)
		}
		names := make([]string, len(specs))
		for i, sp := range specs {
			names[i] = sp.Name + "=" + sp.Source
		}
		direct := "relay only (no UDP port)"
		if udp != nil {
			direct = "direct on " + udp.LocalAddr().String() + "/udp"
		}
		fmt.Fprintf(w, "  media     %s (%s; robonet media list)\n", strings.Join(names, ", "), direct)
	}
	if g != nil && eng != nil {
		mo := gateway.MediaOptions{Engine: eng, Logger: log, Sessions: media.SessionOptions{MaxSessions: mf.maxViewers}}
		if svc != nil {
			mo.Local = func() *media.MediaList { l := svc.List(); return &l }
			if ss := svc.Sessions(); ss != nil {
				mo.DirectSessions = ss.Count
			}
		}
		md := g.MountMedia(mo)
		if gm != nil {
			gm.AddMedia(md)
		}
	}
	return func(ctx context.Context) {
		if svc != nil {
			svc.Close()
		}
		if fc != nil {
			fc.Close()
		}
		then(ctx)
		closeEngine(eng, udp)
	}, nil
}

func closeEngine(eng *media.Engine, udp net.PacketConn) {
	if eng != nil {
		_ = eng.Close()
	}
	if udp != nil {
		_ = udp.Close()
	}
}

func udpAddr(c net.PacketConn) (*net.UDPAddr, bool) {
	if c == nil {
		return nil, false
	}
	a, ok := c.LocalAddr().(*net.UDPAddr)
	return a, ok
}

// interfaceCIDRs lists the IPv4 networks of the host's interfaces that
// are up (the loopback ones when the port is bound to loopback, the
// others otherwise): where the direct path's candidates
// are, so a gateway can tell whether a browser is on one of them.
func interfaceCIDRs(loopback bool) []string {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil
	}
	var out []string
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagUp == 0 || (ifc.Flags&net.FlagLoopback != 0) != loopback {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().Is4() {
				out = append(out, p.String())
			}
		}
	}
	return out
}
