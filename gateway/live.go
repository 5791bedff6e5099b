package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/nats-io/nats.go"

	"github.com/robonet-mesh/robonet/command"
	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/subjects"
	"github.com/robonet-mesh/robonet/wire"
)

// Live socket bounds and rhythms.
const (
	liveReadLimit    = 4 << 10
	liveSendQueue    = 64
	liveWriteTimeout = 5 * time.Second
	livePing         = 20 * time.Second
	liveMaxWatches   = 8
	liveMaxChevrons  = 64 // gauge polls per tick over every socket
	liveTick         = time.Second
	liveNodesEvery   = 5 * time.Second // nodes are resent at least this often
	liveMaxSockets   = 1024
	// CloseUnauthenticated closes a live socket whose session ended.
	CloseUnauthenticated websocket.StatusCode = 4001
)

// hub feeds every live socket from one shared poller, which runs only while
// a socket is open.
type hub struct {
	g *Gateway

	mu       sync.Mutex // guards everything below
	clients  map[*liveClient]struct{}
	closed   bool
	stop     context.CancelFunc // the poller's; nil when it does not run
	nodes    []byte             // the last nodes message
	nodesKey string             // what it said that matters (not last_seen)
	nodesAt  time.Time
	inflight map[string]bool // chevrons whose gauges are being read
	wg       sync.WaitGroup  // sockets and the poller
}

type liveClient struct {
	conn    *websocket.Conn
	p       *Principal
	send    chan []byte
	done    chan struct{} // closed when the socket is being torn down
	closing chan struct{} // closed when the close handshake returned

	mu    sync.Mutex // guards watch and gone
	watch map[string]bool
	gone  bool
}

func newHub(g *Gateway) *hub {
	return &hub{g: g, clients: map[*liveClient]struct{}{}, inflight: map[string]bool{}}
}

// liveIn is a message from a socket.
type liveIn struct {
	Type    string `json:"type"`
	Chevron string `json:"chevron"`
}

// serve upgrades GET /api/live. coder/websocket refuses a handshake whose
// Origin is not the request's host (403) unless told otherwise, which we
// never do: cookies ride along on cross-site WebSocket handshakes.
func (h *hub) serve(w http.ResponseWriter, r *http.Request, p *Principal) {
	conn, err := websocket.Accept(w, r, nil)
	if err != nil {
		return // Accept answered already (403 for a foreign Origin)
	}
	conn.SetReadLimit(liveReadLimit)
	c := &liveClient{conn: conn, p: p, send: make(chan []byte, liveSendQueue),
		done: make(chan struct{}), closing: make(chan struct{}), watch: map[string]bool{}}
	if !h.add(c) {
		conn.Close(websocket.StatusTryAgainLater, "the gateway is shutting down or full")
		return
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(r.Context()))
	defer cancel()
	go func() {
		select {
		case <-c.done:
		case <-ctx.Done():
		}
		cancel()
	}()
	c.queue(mustJSON(map[string]string{"type": "hello", "user": p.User, "role": p.Role, "chevron": h.g.opts.Node.Chevron().String()}))
	h.mu.Lock()
	if h.nodes != nil {
		c.queue(h.nodes)
	}
	h.mu.Unlock()
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		c.writeLoop(ctx)
		cancel()
	}()
	c.readLoop(ctx)
	cancel()
	<-writerDone
	h.remove(c)
	<-c.closing
}

// add registers c and starts the poller for the first socket.
func (h *hub) add(c *liveClient) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed || len(h.clients) >= liveMaxSockets {
		return false
	}
	h.clients[c] = struct{}{}
	h.wg.Add(1)
	if h.stop == nil {
		ctx, cancel := context.WithCancel(context.Background())
		h.stop = cancel
		h.nodes, h.nodesKey = nil, ""
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			h.poll(ctx)
		}()
	}
	return true
}

// remove forgets c, closing it, and stops the poller after the last one.
func (h *hub) remove(c *liveClient) {
	c.close(websocket.StatusNormalClosure, "")
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.clients[c]; !ok {
		return
	}
	delete(h.clients, c)
	h.wg.Done()
	if len(h.clients) == 0 && h.stop != nil {
		h.stop()
		h.stop = nil
	}
}

// close ends every socket and the poller; wait waits for them.
func (h *hub) close() {
	h.mu.Lock()
	h.closed = true
	cs := make([]*liveClient, 0, len(h.clients))
	for c := range h.clients {
		cs = append(cs, c)
	}
	if h.stop != nil {
		h.stop()
		h.stop = nil
	}
	h.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range cs {
		wg.Go(func() { c.close(websocket.StatusGoingAway, "the gateway is shutting down") })
	}
	wg.Wait()
}

func (h *hub) wait() { h.wg.Wait() }

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		b, _ = json.Marshal(map[string]string{"type": "error", "error": err.Error(), "code": CodeInternal})
	}
	return b
}

// queue sends b unless the socket is too slow to keep up, which closes it.
func (c *liveClient) queue(b []byte) {
	c.mu.Lock()
	gone := c.gone
	c.mu.Unlock()
	if gone {
		return
	}
	select {
	case c.send <- b:
	default:
		// Not in the caller's goroutine: the poller must not wait on one
		// slow socket's close handshake (at most a second, see close).
		go c.close(websocket.StatusPolicyViolation, "too slow: messages were piling up")
	}
}

// close tears c down once: it sends the close frame, then (after the
// peer's answer, or a second) closes done, which ends the read and write
// loops; their context's cancellation drops a connection whose peer does
// not answer. closing is closed when the close handshake has returned.
func (c *liveClient) close(code websocket.StatusCode, reason string) {
	c.mu.Lock()
	if c.gone {
		c.mu.Unlock()
		return
	}
	c.gone = true
	c.mu.Unlock()
	go func() {
		defer close(c.closing)
		_ = c.conn.Close(code, reason)
	}()
	select {
	case <-c.closing:
	case <-time.After(time.Second):
	}
	close(c.done)
}

func (c *liveClient) writeLoop(ctx context.Context) {
	ping := time.NewTicker(livePing)
	defer ping.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case b := <-c.send:
			wctx, cancel := context.WithTimeout(ctx, liveWriteTimeout)
			err := c.conn.Write(wctx, websocket.MessageText, b)
			cancel()
			if err != nil {
				return
			}
		case <-ping.C:
			pctx, cancel := context.WithTimeout(ctx, liveWriteTimeout)
			err := c.conn.Ping(pctx)
			cancel()
			if err != nil {
				return
			}
		}
	}
}

func (c *liveClient) readLoop(ctx context.Context) {
	for {
		typ, data, err := c.conn.Read(ctx)
		if err != nil {
			return
		}
		if typ != websocket.MessageText {
			c.queue(liveError("binary messages are not understood", CodeBadRequest))
			continue
		}
		var in liveIn
		if err := json.Unmarshal(data, &in); err != nil {
			c.queue(liveError("message: "+err.Error(), CodeBadRequest))
			continue
		}
		c.handle(in)
	}
}

func liveError(msg, code string) []byte {
	return mustJSON(map[string]string{"type": "error", "error": msg, "code": code})
}

// handle applies one client message.
func (c *liveClient) handle(in liveIn) {
	switch in.Type {
	case "watch", "unwatch":
	default:
		c.queue(liveError("message type "+strings.ToValidUTF8(clip(in.Type, 40), "?")+": want watch or unwatch", CodeBadRequest))
		return
	}
	ch, err := subjects.Parse(in.Chevron)
	if err != nil {
		c.queue(liveError("chevron "+strings.ToValidUTF8(clip(in.Chevron, 40), "?")+": "+err.Error(), CodeBadRequest))
		return
	}
	key := ch.String()
	c.mu.Lock()
	full := in.Type == "watch" && !c.watch[key] && len(c.watch) >= liveMaxWatches
	switch {
	case in.Type == "unwatch":
		delete(c.watch, key)
	case !full:
		c.watch[key] = true
	}
	c.mu.Unlock()
	if full {
		c.queue(liveError("at most 8 nodes watched per socket: unwatch one first", CodeBadRequest))
	}
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// poll is the shared feed: events from the node connection, the nodes
// list on change, gauges for watched nodes each second.
func (h *hub) poll(ctx context.Context) {
	trigger := make(chan struct{}, 1)
	nc := h.g.conn()
	var subs []*nats.Subscription
	if nc != nil {
		kick := func(*nats.Msg) {
			select {
			case trigger <- struct{}{}:
			default:
			}
		}
		for _, kind := range []string{"join", "leave", "leader"} {
			for _, s := range subjects.EventWildcards(kind) {
				if sub, err := nc.Subscribe(s, kick); err == nil {
					subs = append(subs, sub)
				}
			}
		}
		for _, s := range subjects.EventWildcards("alert") {
			if sub, err := nc.Subscribe(s, h.alert); err == nil {
				subs = append(subs, sub)
			}
		}
	}
	defer func() {
		for _, s := range subs {
			_ = s.Unsubscribe()
		}
	}()
	tick := time.NewTicker(liveTick)
	defer tick.Stop()
	h.refreshNodes(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-trigger:
			h.refreshNodes(ctx)
		case <-tick.C:
			h.checkAuth()
			h.refreshNodes(ctx)
			h.gauges(ctx)
		}
	}
}

// sockets is a copy of the open sockets.
func (h *hub) sockets() []*liveClient {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]*liveClient, 0, len(h.clients))
	for c := range h.clients {
		out = append(out, c)
	}
	return out
}

func (h *hub) broadcast(b []byte) {
	for _, c := range h.sockets() {
		c.queue(b)
	}
}

// checkAuth closes the sockets whose session or token ended.
func (h *hub) checkAuth() {
	for _, c := range h.sockets() {
		if !h.g.auth.alive(c.p) {
			c.close(CloseUnauthenticated, "unauthenticated: the session ended")
		}
	}
}

// refreshNodes reads the registry (as the first socket's principal that
// may) and sends it when it changed or liveNodesEvery passed.
func (h *hub) refreshNodes(ctx context.Context) {
	var ms []wire.Member
	read := false
	for _, c := range h.sockets() {
		qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		got, err := c.p.Client.Nodes(qctx)
		cancel()
		if err == nil {
			ms, read = got, true
			break
		}
	}
	if !read {
		return
	}
	if ms == nil {
		ms = []wire.Member{}
	}
	var key strings.Builder
	for _, m := range ms {
		key.WriteString(m.Chevron + "|" + m.Name + "|" + m.State + "|" + m.Role + "|" + m.Pubkey)
		if m.Leader {
			key.WriteString("|L")
		}
		key.WriteByte(byte('0' + m.Tier))
		key.WriteByte(';')
	}
	now := time.Now()
	h.mu.Lock()
	if key.String() == h.nodesKey && now.Sub(h.nodesAt) < liveNodesEvery {
		h.mu.Unlock()
		return
	}
	b := mustJSON(map[string]any{"type": "nodes", "nodes": ms})
	h.nodes, h.nodesKey, h.nodesAt = b, key.String(), now
	h.mu.Unlock()
	h.broadcast(b)
}

// alert forwards a Sentinel alert event.
func (h *hub) alert(m *nats.Msg) {
	if len(m.Data) > 16<<10 {
		return
	}
	var a wire.Alert
	if err := json.Unmarshal(m.Data, &a); err != nil {
		return
	}
	h.broadcast(mustJSON(map[string]any{"type": "alert", "alert": a}))
}

// gauges reads the gauges of every watched node, one read per node at a
// time, each as one of its watchers, and sends them to its watchers.
func (h *hub) gauges(ctx context.Context) {
	watchers := map[string][]*liveClient{}
	for _, c := range h.sockets() {
		c.mu.Lock()
		for ch := range c.watch {
			if len(watchers) < liveMaxChevrons || watchers[ch] != nil {
				watchers[ch] = append(watchers[ch], c)
			}
		}
		c.mu.Unlock()
	}
	for ch, cs := range watchers {
		h.mu.Lock()
		busy := h.inflight[ch]
		if !busy {
			h.inflight[ch] = true
			h.wg.Add(1)
		}
		h.mu.Unlock()
		if busy {
			continue
		}
		go func() {
			defer h.wg.Done()
			b := gaugeMessage(ctx, cs[0].p.Client, ch)
			h.mu.Lock()
			delete(h.inflight, ch)
			h.mu.Unlock()
			for _, c := range cs {
				c.mu.Lock()
				still := c.watch[ch]
				c.mu.Unlock()
				if still {
					c.queue(b)
				}
			}
		}()
	}
}

// gaugeView is a live "gauges" message.
type gaugeView struct {
	Type    string          `json:"type"`
	Chevron string          `json:"chevron"`
	Time    time.Time       `json:"time"`
	Gauges  []command.Gauge `json:"gauges"`
	Error   string          `json:"error,omitempty"`
}

// gaugeMessage runs `gauge list` on node ch as c.
func gaugeMessage(ctx context.Context, c *mesh.Client, ch string) []byte {
	v := gaugeView{Type: "gauges", Chevron: ch, Time: time.Now().UTC(), Gauges: []command.Gauge{}}
	gctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	res, err := c.Gather(gctx, mesh.GatherRequest{Selector: ch, Verb: "gauge", Args: json.RawMessage(`{"metric":"list"}`),
		Timeout: 1500 * time.Millisecond, From: "gateway live"}, nil)
	if err != nil {
		v.Error = err.Error()
		return mustJSON(v)
	}
	found := false
	for _, r := range res.Results {
		if r.Chevron != ch {
			continue
		}
		found = true
		if r.Status != wire.StatusOK {
			v.Error = r.Status + ": " + r.Error
			break
		}
		var gr command.GaugeReply
		if err := json.Unmarshal(r.Output, &gr); err != nil {
			v.Error = "gauge reply: " + err.Error()
			break
		}
		v.Gauges = gr.Gauges
	}
	if !found && v.Error == "" {
		v.Error = errors.New("no node " + ch + " answered").Error()
	}
	return mustJSON(v)
}
