package media

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/logging"
	"github.com/pion/webrtc/v4"
)

// h264PayloadType is the payload type the engine registers H.264 under; pion
// rewrites it per binding to what each viewer offered.
const h264PayloadType = 102

// h264Codec is the capability of every track the engine sends.
var h264Codec = webrtc.RTPCodecCapability{
	MimeType:    webrtc.MimeTypeH264,
	ClockRate:   90000,
	SDPFmtpLine: H264FmtpLine, // the Encoder's: constrained baseline, what every browser decodes
	RTCPFeedback: []webrtc.RTCPFeedback{
		{Type: "nack"}, {Type: "nack", Parameter: "pli"}, {Type: "ccm", Parameter: "fir"},
		{Type: "goog-remb"}, {Type: "transport-cc"},
	},
}

// newTrack returns a track of the engine's codec, as the Encoder's: id
// "video", stream id "robonet-<stream>".
func newTrack(stream string) (*webrtc.TrackLocalStaticRTP, error) {
	c := h264Codec
	c.RTCPFeedback = nil
	return webrtc.NewTrackLocalStaticRTP(c, "video", "robonet-"+stream)
}

// Source is what a session sends: a shared track plus its lifecycle. The
// Encoder is one; the relay's RelaySource another.
type Source interface {
	Track() *webrtc.TrackLocalStaticRTP
	Acquire() (release func())
	Ready(ctx context.Context) error
}

// EngineConfig configures the one WebRTC stack of a process.
type EngineConfig struct {
	UDP          net.PacketConn // the one ICE-UDP port (8341 by default); nil = no UDP candidates
	TCP          net.Listener   // ICE-TCP (RFC 4571) connections, e.g. demuxed off the gateway's port; nil = none
	TCPAdvertise []string       // extra IPv4s to advertise TCP candidates on (a NAT's address reaching one of this host's interfaces); empty = the gathered ones only
	HostIPs      []string       // NAT 1:1 / advertised host IPs (UDP and TCP candidates); empty = the interfaces'
	Loopback     bool           // include loopback candidates (tests in a loopback-only netns)
	Logger       *slog.Logger
}

// Engine is one pion API shared by every session of a process: one codec
// table, one interceptor chain and one ICE port (UDP mux, TCP mux).
type Engine struct {
	api    *webrtc.API
	log    *slog.Logger
	muxes  []io.Closer
	closed sync.Once
	// tcpCands are the a=candidate lines of EngineConfig.TCPAdvertise.
	tcpCands []string
}

// NewEngine builds the API: H.264 42e01f packetization-mode 1 with nack, nack
// pli, ccm fir, goog-remb and transport-cc feedback; pion's default
// interceptors; ICE-UDP mux on cfg.UDP and ICE-TCP mux on cfg.TCP (the
// network types are limited to those configured); mDNS off; DTLS
// HelloVerify skipped (one round trip less to the first frame). pion's own
// logs go to cfg.Logger at warn and above.
func NewEngine(cfg EngineConfig) (*Engine, error) {
	if cfg.UDP == nil && cfg.TCP == nil {
		return nil, errors.New("media engine: neither EngineConfig.UDP nor EngineConfig.TCP is set: no ICE candidate possible")
	}
	for _, ip := range append(append([]string(nil), cfg.HostIPs...), cfg.TCPAdvertise...) {
		if a := net.ParseIP(ip); a == nil || a.To4() == nil {
			return nil, fmt.Errorf("media engine: advertised IP %q is not an IPv4 address", ip)
		}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	lf := slogFactory{log: log.With("component", "pion")}

	me := &webrtc.MediaEngine{}
	if err := me.RegisterCodec(webrtc.RTPCodecParameters{RTPCodecCapability: h264Codec, PayloadType: h264PayloadType}, webrtc.RTPCodecTypeVideo); err != nil {
		return nil, fmt.Errorf("media engine: register H264: %w", err)
	}
	ir := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptorsWithOptions(me, ir, webrtc.WithInterceptorLoggerFactory(lf)); err != nil {
		return nil, fmt.Errorf("media engine: interceptors: %w", err)
	}

	se := webrtc.SettingEngine{LoggerFactory: lf}
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetDTLSInsecureSkipHelloVerify(true)
	se.SetIncludeLoopbackCandidate(cfg.Loopback)
	e := &Engine{log: log}
	var types []webrtc.NetworkType
	if cfg.UDP != nil {
		types = append(types, webrtc.NetworkTypeUDP4)
		m := webrtc.NewICEUDPMux(lf.NewLogger("ice-udp"), cfg.UDP)
		se.SetICEUDPMux(m)
		e.muxes = append(e.muxes, m)
	}
	if cfg.TCP != nil {
		types = append(types, webrtc.NetworkTypeTCP4)
		m := webrtc.NewICETCPMux(lf.NewLogger("ice-tcp"), cfg.TCP, 8)
		se.SetICETCPMux(m)
		e.muxes = append(e.muxes, m)
		if a, ok := cfg.TCP.Addr().(*net.TCPAddr); ok && len(cfg.TCPAdvertise) > 0 {
			// pion's address rewriting cannot tell UDP from TCP: the
			// advertised TCP candidates are added to each answer instead.
			// The mux finds a connection's session by its ICE ufrag and
			// the local address it arrived on, so an advertised address
			// must lead to an interface address pion gathered.
			for i, ip := range cfg.TCPAdvertise {
				e.tcpCands = append(e.tcpCands, fmt.Sprintf("a=candidate:%d 1 tcp %d %s %d typ host tcptype passive",
					4242+i, 1671430143-i, ip, a.Port))
			}
		}
	} else {
		se.DisableActiveTCP(true)
	}
	se.SetNetworkTypes(types)
	if len(cfg.HostIPs) > 0 {
		// pion applies the rule to UDP and TCP host candidates alike.
		if err := se.SetICEAddressRewriteRules(webrtc.ICEAddressRewriteRule{
			External: cfg.HostIPs, AsCandidateType: webrtc.ICECandidateTypeHost, Mode: webrtc.ICEAddressRewriteReplace,
		}); err != nil {
			e.closeMuxes()
			return nil, fmt.Errorf("media engine: advertised host IPs %v: %w", cfg.HostIPs, err)
		}
	}
	// Disconnected after 5 s without traffic, failed after 15 s: a viewer
	// that closed its tab without DELETE frees its encoder soon.
	se.SetICETimeouts(5*time.Second, 15*time.Second, 2*time.Second)

	e.api = webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se))
	return e, nil
}

// Close closes the ICE muxes and with them cfg.UDP and cfg.TCP. Sessions
// built on the engine should be closed first.
func (e *Engine) Close() error {
	e.closed.Do(e.closeMuxes)
	return nil
}

func (e *Engine) closeMuxes() {
	for _, m := range e.muxes {
		if err := m.Close(); err != nil {
			e.log.Debug("media engine: close mux", "err", err)
		}
	}
}

// slogFactory routes pion's logging to slog, dropping everything below warn:
// pion's debug and info lines are per packet or per candidate.
type slogFactory struct{ log *slog.Logger }

func (f slogFactory) NewLogger(scope string) logging.LeveledLogger {
	return slogLeveled{log: f.log.With("scope", scope)}
}

type slogLeveled struct{ log *slog.Logger }

func (slogLeveled) Trace(string)          {}
func (slogLeveled) Tracef(string, ...any) {}
func (slogLeveled) Debug(string)          {}
func (slogLeveled) Debugf(string, ...any) {}
func (slogLeveled) Info(string)           {}
func (slogLeveled) Infof(string, ...any)  {}
func (l slogLeveled) Warn(msg string)     { l.log.Warn(msg) }
func (l slogLeveled) Warnf(format string, args ...any) {
	l.log.Warn(fmt.Sprintf(format, args...))
}
func (l slogLeveled) Error(msg string) { l.log.Error(msg) }
func (l slogLeveled) Errorf(format string, args ...any) {
	l.log.Error(fmt.Sprintf(format, args...))
}

// withTCPCandidates adds the TCPAdvertise candidates to an answer, before
// its first a=end-of-candidates (the bundle's first section).
func (e *Engine) withTCPCandidates(sdp string) string {
	if len(e.tcpCands) == 0 {
		return sdp
	}
	const eoc = "a=end-of-candidates\r\n"
	add := strings.Join(e.tcpCands, "\r\n") + "\r\n"
	if i := strings.Index(sdp, eoc); i >= 0 {
		return sdp[:i] + add + sdp[i:]
	}
	return strings.TrimRight(sdp, "\r\n") + "\r\n" + add
}
