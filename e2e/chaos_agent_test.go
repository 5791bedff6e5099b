//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/subjects"
	"github.com/robonet-mesh/robonet/wire"
)

// The agent's side of the chaos suite: a steady load of signed commands
// that writes every command it sent and every reply it got to a file, a
// recorder that writes every audit record it sees live to a file, and a
// read of the audit records kept in JetStream. Files, not stdout lines:
// an hour's soak is hundreds of thousands of records.

// loadLine is one line of a load's file: a command sent ("s") or a reply
// received ("r").
type loadLine struct {
	K       string    `json:"k"`
	ID      string    `json:"id"`
	At      time.Time `json:"at"`
	Err     string    `json:"err,omitempty"` // s: the publish failed
	Chevron string    `json:"chev,omitempty"`
	Name    string    `json:"name,omitempty"`
	Status  string    `json:"status,omitempty"`
	Code    string    `json:"code,omitempty"`
	Msg     string    `json:"msg,omitempty"` // r: the error's message, clipped
	Via     string    `json:"via,omitempty"` // s: the server the client was connected to
}

// auditLine is one line of a record's or an audits file: an audit record
// seen on subject.
type auditLine struct {
	// K is "" for a record, "down" and "up" when a recorder's connection
	// dropped and came back (it saw nothing in between).
	K       string    `json:"k,omitempty"`
	Subject string    `json:"subject"`
	ID      string    `json:"id"`
	Status  string    `json:"status"`
	Verb    string    `json:"verb"`
	At      time.Time `json:"at"`
	Seq     uint64    `json:"seq,omitempty"` // audits: the stream sequence
	// MsgID is the record's Nats-Msg-Id: a node that publishes one record
	// again (a retry until the stream acks it) sends the same id, so
	// copies of one record are told from two records.
	MsgID string `json:"msg_id,omitempty"`
}

// auditBody is the part of an audit record (node.Audit, the JSON contract
// of rn.<chevron>.evt.audit) the suite reads.
type auditBody struct {
	ID     string `json:"id"`
	Status string `json:"status"`
	Verb   string `json:"verb"`
}

// loadStats sums up a load when it stops.
type loadStats struct {
	Sent       int `json:"sent"`
	PubErrors  int `json:"publish_errors"`
	Replies    int `json:"replies"`
	Reconnects int `json:"reconnects"` // connections opened again after one closed
}

// lineFile appends JSON lines to a file, flushing at least every second.
type lineFile struct {
	mu   sync.Mutex // guards w, err
	f    *os.File
	w    *bufio.Writer
	err  error
	stop chan struct{}
	done chan struct{}
}

func openLines(path string) (*lineFile, error) {
	if path == "" {
		return nil, fmt.Errorf("no file")
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	lf := &lineFile{f: f, w: bufio.NewWriterSize(f, 64<<10), stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(lf.done)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-lf.stop:
				return
			case <-tick.C:
				lf.mu.Lock()
				if err := lf.w.Flush(); err != nil && lf.err == nil {
					lf.err = err
				}
				lf.mu.Unlock()
			}
		}
	}()
	return lf, nil
}

func (lf *lineFile) put(v any) {
	data, err := json.Marshal(v)
	lf.mu.Lock()
	defer lf.mu.Unlock()
	if err == nil {
		data = append(data, '\n')
		_, err = lf.w.Write(data)
	}
	if err != nil && lf.err == nil {
		lf.err = err
	}
}

func (lf *lineFile) close() error {
	close(lf.stop)
	<-lf.done
	lf.mu.Lock()
	defer lf.mu.Unlock()
	if err := lf.w.Flush(); err != nil && lf.err == nil {
		lf.err = err
	}
	if err := lf.f.Close(); err != nil && lf.err == nil {
		lf.err = err
	}
	return lf.err
}

// load is a running steady load.
type load struct {
	stop  chan struct{}
	done  chan struct{}
	out   *lineFile
	mu    sync.Mutex // guards stats, conns
	stats loadStats
	conns []*mesh.Client // every connection it opened; the last is current
}

// startLoad publishes op.Data (a wire.Request; each copy gets the id
// "<op.Client>-<n>") to op.Subject op.Rate times a second, signed with the
// agent's key, until unload, writing every command sent and every reply
// to op.File. It has its own connection to the agent's servers. A
// robonet client connection stays with the node it first proved (its key
// is pinned for the connection's life), so when that node goes away the
// connection closes instead of failing over; the load then connects
// again, to whichever node answers, as an application would. Commands due
// while it has no connection are recorded as not sent.
func (a *agentProc) startLoad(op agentOp) error {
	var body map[string]any
	if err := json.Unmarshal(op.Data, &body); err != nil {
		return fmt.Errorf("load body: %w", err)
	}
	if op.Rate <= 0 || op.Rate > 500 {
		return fmt.Errorf("load rate %d: want 1…500 a second", op.Rate)
	}
	if err := subjects.ValidToken(op.Client); err != nil {
		return fmt.Errorf("load client: %w", err)
	}
	out, err := openLines(op.File)
	if err != nil {
		return fmt.Errorf("load file: %w", err)
	}
	l := &load{stop: make(chan struct{}), done: make(chan struct{}), out: out}
	prefix := subjects.Inbox(a.pub) + ".load." + op.Client
	onReply := func(r *nats.Msg) {
		var res wire.Result
		line := loadLine{K: "r", At: time.Now()}
		if json.Unmarshal(r.Data, &res) != nil {
			line.Status = "undecodable"
		} else {
			line.ID, line.Chevron, line.Name, line.Status = res.ID, res.Chevron, res.Name, res.Status
			if res.Error != nil {
				line.Code, line.Msg = res.Error.Code, clip([]byte(res.Error.Msg))
			}
		}
		out.put(line)
		l.mu.Lock()
		l.stats.Replies++
		l.mu.Unlock()
	}
	connect := func() (*mesh.Client, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := mesh.Connect(ctx, a.connOpts)
		if err != nil {
			return nil, err
		}
		s, err := c.Conn().Subscribe(prefix+".>", onReply)
		if err == nil {
			_ = s.SetPendingLimits(-1, -1)
			err = c.Conn().Flush()
		}
		if err != nil {
			c.Close()
			return nil, err
		}
		l.mu.Lock()
		l.conns = append(l.conns, c)
		l.mu.Unlock()
		return c, nil
	}
	conn, err := connect()
	if err != nil {
		_ = out.close()
		return err
	}
	a.mu.Lock()
	if a.load != nil {
		a.mu.Unlock()
		conn.Close()
		_ = out.close()
		return fmt.Errorf("a load is running")
	}
	a.load = l
	a.mu.Unlock()
	go func() {
		defer close(l.done)
		tick := time.NewTicker(time.Second / time.Duration(op.Rate))
		defer tick.Stop()
		for i := 1; ; i++ {
			select {
			case <-l.stop:
				return
			case <-tick.C:
			}
			id := fmt.Sprintf("%s-%d", op.Client, i)
			line := loadLine{K: "s", ID: id, At: time.Now()}
			if conn == nil || conn.Conn().IsClosed() {
				c, err := connect()
				l.mu.Lock()
				l.stats.Reconnects++
				l.mu.Unlock()
				if err != nil {
					conn = nil
					line.Err = "no connection: " + err.Error()
				} else {
					conn = c
				}
			}
			if line.Err == "" {
				body["id"] = id
				data, _ := json.Marshal(body)
				m := &nats.Msg{Subject: op.Subject, Reply: fmt.Sprintf("%s.%d", prefix, i), Data: data}
				err := conn.Signer().SignMsg(m)
				if err == nil {
					err = conn.Conn().PublishMsg(m)
				}
				if err != nil {
					line.Err = err.Error()
				}
				line.Via = conn.Conn().ConnectedAddr()
			}
			line.At = time.Now()
			l.mu.Lock()
			l.stats.Sent++
			if line.Err != "" {
				l.stats.PubErrors++
			}
			l.mu.Unlock()
			out.put(line)
		}
	}()
	return nil
}

// stopLoad stops sending, waits grace for the last replies and closes the
// load's file.
func (a *agentProc) stopLoad(grace time.Duration) (*loadStats, error) {
	a.mu.Lock()
	l := a.load
	a.load = nil
	a.mu.Unlock()
	if l == nil {
		return nil, fmt.Errorf("no load running")
	}
	close(l.stop)
	<-l.done
	// Replies still on their way: wait until none came for a second, at
	// most grace.
	deadline := time.Now().Add(grace)
	last := -1
	for time.Now().Before(deadline) {
		l.mu.Lock()
		n := l.stats.Replies
		l.mu.Unlock()
		if n == last {
			break
		}
		last = n
		select {
		case <-time.After(time.Second):
		case <-time.After(time.Until(deadline)):
		}
	}
	l.mu.Lock()
	for _, c := range l.conns {
		c.Close()
	}
	l.mu.Unlock()
	err := l.out.close()
	l.mu.Lock()
	st := l.stats
	l.mu.Unlock()
	return &st, err
}

// recorder writes every audit record on one subject, seen live, and when
// it could not see them: "down" and "up" lines when its connection drops
// and comes back. It has its own connection, opened again when one
// closes (a node restarting refuses the key until it knows it, and
// nats.go gives up on a connection refused twice).
type recorder struct {
	out  *lineFile
	stop chan struct{}
	done chan struct{}
	mu   sync.Mutex // guards n
	n    int
}

// startRecord writes every audit record published on subject (a pattern
// such as rn.*.evt.audit) to file, as it arrives.
func (a *agentProc) startRecord(subject, file string) error {
	out, err := openLines(file)
	if err != nil {
		return fmt.Errorf("record file: %w", err)
	}
	r := &recorder{out: out, stop: make(chan struct{}), done: make(chan struct{})}
	onMsg := func(m *nats.Msg) {
		var b auditBody
		_ = json.Unmarshal(m.Data, &b)
		out.put(auditLine{Subject: m.Subject, ID: b.ID, Status: b.Status, Verb: b.Verb, At: time.Now(),
			MsgID: m.Header.Get(jetstream.MsgIDHeader)})
		r.mu.Lock()
		r.n++
		r.mu.Unlock()
	}
	connect := func() (*mesh.Client, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := mesh.Connect(ctx, a.connOpts)
		if err != nil {
			return nil, err
		}
		nc := c.Conn()
		nc.SetDisconnectErrHandler(func(*nats.Conn, error) { out.put(auditLine{K: "down", At: time.Now()}) })
		nc.SetReconnectHandler(func(*nats.Conn) { out.put(auditLine{K: "up", At: time.Now()}) })
		s, err := nc.Subscribe(subject, onMsg)
		if err == nil {
			_ = s.SetPendingLimits(-1, -1)
			err = nc.Flush()
		}
		if err != nil {
			c.Close()
			return nil, err
		}
		return c, nil
	}
	c, err := connect()
	if err != nil {
		_ = out.close()
		return err
	}
	a.mu.Lock()
	if a.records[subject] != nil {
		a.mu.Unlock()
		c.Close()
		_ = out.close()
		return fmt.Errorf("already recording %s", subject)
	}
	a.records[subject] = r
	a.mu.Unlock()
	go func() {
		defer close(r.done)
		for {
			select {
			case <-r.stop:
				if c != nil {
					c.Close()
				}
				return
			case <-time.After(200 * time.Millisecond):
			}
			if c != nil && !c.Conn().IsClosed() {
				continue
			}
			if c != nil {
				out.put(auditLine{K: "down", At: time.Now()})
				c = nil
			}
			if nc, err := connect(); err == nil {
				c = nc
				out.put(auditLine{K: "up", At: time.Now()})
			}
		}
	}()
	return nil
}

// stopRecord ends a recording and returns how many records it wrote.
func (a *agentProc) stopRecord(subject string) (int, error) {
	a.mu.Lock()
	r := a.records[subject]
	delete(a.records, subject)
	a.mu.Unlock()
	if r == nil {
		return 0, fmt.Errorf("not recording %s", subject)
	}
	close(r.stop)
	<-r.done
	err := r.out.close()
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n, err
}

// readAudits finds the stream that keeps subject (one node's audit
// subject, rn.<chevron>.evt.audit) and writes every audit record it holds
// (every node's: filter rn.*.evt.audit) to file. It returns the stream's
// name and how many records it wrote.
func (a *agentProc) readAudits(subject, file string, timeout time.Duration) (string, int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	js, err := jetstream.New(a.nc)
	if err != nil {
		return "", 0, err
	}
	name, err := js.StreamNameBySubject(ctx, subject)
	if err != nil {
		return "", 0, fmt.Errorf("no stream keeps %s: %w", subject, err)
	}
	st, err := js.Stream(ctx, name)
	if err != nil {
		return name, 0, err
	}
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{subjects.Root + ".*.evt." + subjects.EvtAudit}})
	if err != nil {
		return name, 0, err
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return name, 0, err
	}
	out, err := openLines(file)
	if err != nil {
		return name, 0, err
	}
	n := 0
	left := info.NumPending
	for left > 0 {
		batch, err := cons.Fetch(int(min(left, 512)), jetstream.FetchMaxWait(3*time.Second))
		if err != nil {
			_ = out.close()
			return name, n, err
		}
		got := 0
		for m := range batch.Messages() {
			got++
			var b auditBody
			_ = json.Unmarshal(m.Data(), &b)
			line := auditLine{Subject: m.Subject(), ID: b.ID, Status: b.Status, Verb: b.Verb,
				MsgID: m.Headers().Get(jetstream.MsgIDHeader)}
			if md, err := m.Metadata(); err == nil {
				line.Seq, line.At = md.Sequence.Stream, md.Timestamp
			}
			out.put(line)
			n++
		}
		if err := batch.Error(); err != nil {
			_ = out.close()
			return name, n, err
		}
		if got == 0 {
			_ = out.close()
			return name, n, fmt.Errorf("stream %s: %d records pending but none delivered", name, left)
		}
		left -= uint64(got)
	}
	return name, n, out.close()
}
