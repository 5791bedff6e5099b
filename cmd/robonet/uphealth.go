package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/pflag"

	"github.com/robonet-mesh/robonet/node"
	"github.com/robonet-mesh/robonet/wire"
)

// The health endpoint: plain HTTP for a supervisor's probes (Kubernetes,
// Docker, a load balancer), separate from the gateway because it must
// answer before the node is ready, needs no login, and says nothing an
// observer could use beyond whether the node is up.
const (
	healthOff = "off"
	// healthCache bounds how often the probes compute a status: an
	// unauthenticated port must not be a way to make the node do work.
	healthCache = 250 * time.Millisecond
)

// Health states (healthReport.State).
const (
	healthStarting = "starting" // waiting for the swarm, or restarting in a new role
	healthReady    = "ready"
	healthStopping = "stopping" // lame duck
)

func addHealthFlags(f *pflag.FlagSet) *string {
	return f.String("health", healthOff, "plain-HTTP health endpoint for probes on host:port, or off: GET /healthz (200 while the process runs), /readyz (200 once the node is ready and its JetStream current), e.g. 0.0.0.0:8222")
}

// healthReport is the JSON body of both endpoints.
type healthReport struct {
	Ready        bool   `json:"ready"`
	State        string `json:"state"`
	SurvivesLoss bool   `json:"survives_loss"`
	Resilience   string `json:"resilience,omitempty"`
}

// health serves the endpoint; its node changes when the node restarts in a
// new role. A nil *health (the endpoint off) ignores every call.
type health struct {
	node     atomic.Pointer[node.Node]
	stopping atomic.Bool
	srv      *http.Server
	done     chan struct{}

	mu     sync.Mutex // guards cached and at
	cached healthReport
	at     time.Time
}

// startHealth listens on addr ("off" or "": no endpoint) and serves until
// close.
func startHealth(addr string, log *slog.Logger) (*health, error) {
	if addr == "" || addr == healthOff {
		return nil, nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("--health %q: want host:port or off: %v", addr, err)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return nil, fmt.Errorf("--health %q: port %q is not a number 0..65535", addr, port)
	}
	if host != "" && net.ParseIP(host) == nil && host != "localhost" {
		return nil, fmt.Errorf("--health %q: host %q is not an IP address (or localhost)", addr, host)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--health %s: %w", addr, err)
	}
	h := &health{done: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", h.serveLive)
	mux.HandleFunc("/readyz", h.serveReady)
	h.srv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       5 * time.Second,
		WriteTimeout:      5 * time.Second,
		IdleTimeout:       30 * time.Second,
		MaxHeaderBytes:    8 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	go func() {
		defer close(h.done)
		if err := h.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("health endpoint stopped", "err", err)
		}
	}()
	log.Info("health endpoint", "addr", ln.Addr().String())
	return h, nil
}

// set names the node the endpoint reports on (nil while none runs).
func (h *health) set(n *node.Node) {
	if h != nil {
		h.node.Store(n)
		h.mu.Lock()
		h.at = time.Time{}
		h.mu.Unlock()
	}
}

// stop marks the process as shutting down: /readyz fails from now on, so
// a load balancer stops sending new clients while the lame duck drains.
func (h *health) stop() {
	if h != nil {
		h.stopping.Store(true)
	}
}

func (h *health) close() {
	if h == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = h.srv.Shutdown(ctx)
	<-h.done
}

// report is the node's state, computed at most every healthCache.
func (h *health) report() healthReport {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.at.IsZero() && time.Since(h.at) < healthCache && !h.stopping.Load() {
		return h.cached
	}
	r := healthReport{State: healthStarting}
	if n := h.node.Load(); n != nil {
		st := n.Status()
		r.SurvivesLoss, r.Resilience = st.SurvivesLoss, st.Resilience
		if st.State == wire.StateAlive {
			r.State = healthReady
			r.Ready = st.JetStreamOK
			if !r.Ready {
				r.Resilience = "JetStream not current (no quorum, or the leaf link to the core is down)"
			}
		}
	}
	if h.stopping.Load() {
		r.State, r.Ready = healthStopping, false
	}
	h.cached, h.at = r, time.Now()
	return r
}

func (h *health) serveLive(w http.ResponseWriter, r *http.Request) {
	if !h.method(w, r) {
		return
	}
	rep := h.report()
	writeHealth(w, r, http.StatusOK, rep)
}

func (h *health) serveReady(w http.ResponseWriter, r *http.Request) {
	if !h.method(w, r) {
		return
	}
	rep := h.report()
	code := http.StatusOK
	if !rep.Ready {
		code = http.StatusServiceUnavailable
	}
	writeHealth(w, r, code, rep)
}

// method allows GET and HEAD only.
func (h *health) method(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	w.Header().Set("Allow", "GET, HEAD")
	http.Error(w, "the health endpoint answers GET and HEAD only", http.StatusMethodNotAllowed)
	return false
}

func writeHealth(w http.ResponseWriter, r *http.Request, code int, rep healthReport) {
	body, _ := json.Marshal(rep)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	if r.Method != http.MethodHead {
		_, _ = w.Write(append(body, '\n'))
	}
}

// resilienceWatch prints, once per process, the line saying the swarm is
// ready to lose a node (buckets R3 and current on three JetStream
// servers), and logs each later change either way. It ends with ctx.
type resilienceWatch struct {
	out     io.Writer
	log     *slog.Logger
	printed atomic.Bool
}

// watch follows n until ctx ends or n stops.
func (rw *resilienceWatch) watch(ctx context.Context, n *node.Node) {
	if !n.Clustered() || n.Role() == wire.NodeRoleEdge {
		return
	}
	swarm := n.Status().Swarm
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	was := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-n.Done():
			return
		case <-tick.C:
		}
		ok, why := n.Resilience()
		if ok == was {
			continue
		}
		was = ok
		switch {
		case ok && rw.printed.CompareAndSwap(false, true):
			fmt.Fprintf(rw.out, "robonet: swarm %q ready: %s\n", swarm, why)
		case ok:
			rw.log.Info("the swarm survives the loss of a node again", "why", why)
		default:
			rw.log.Warn("the swarm cannot survive the loss of a node now", "why", why)
		}
	}
}
