package media

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/subjects"
	"github.com/robonet-mesh/robonet/wire"
)

// serviceRig is a Service on an embedded NATS server whose authorizer is
// the test's: tiers by key, as the node would judge them.
type serviceRig struct {
	nc    *nats.Conn
	chev  subjects.Chevron
	svc   *Service
	tiers map[string]int
}

func newServiceRig(t *testing.T) *serviceRig {
	t.Helper()
	nc := startNATS(t)
	kp, _ := nkeys.CreateServer()
	signer, err := mesh.NewSessionSigner(kp, "")
	if err != nil {
		t.Fatal(err)
	}
	needFFmpeg(t)
	// An encoder that is never started: every check below comes first.
	enc, err := NewEncoder(Spec{Name: "test", Source: "testsrc", Kind: KindTest, Width: 160, Height: 120, FPS: 5}, EncoderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(enc.Close)
	chev, _ := subjects.Parse("3.12.7.1")
	r := &serviceRig{nc: nc, chev: chev, tiers: map[string]int{"UVIEWER": 1, "UNODE0": 0}}
	encs := []*Encoder{enc}
	r.svc, err = NewService(ServiceOptions{Conn: nc, Chevron: r.chev, Signer: signer, Encoders: encs,
		Authorize: func(m *nats.Msg) (string, int, *wire.Error) {
			pub := m.Header.Get("Test-Key")
			tier, ok := r.tiers[pub]
			if !ok {
				return "", 0, &wire.Error{Code: wire.CodeDenied, Msg: "unknown key " + pub}
			}
			return pub, tier, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.svc.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.svc.Close)
	return r
}

// ask sends data on subj as key and returns the reply's status and error.
func (r *serviceRig) ask(t *testing.T, subj, key string, data []byte) (WHEPReply, *wire.Error) {
	t.Helper()
	m := &nats.Msg{Subject: subj, Data: data, Header: nats.Header{"Test-Key": []string{key}}}
	resp, err := r.nc.RequestMsg(m, 5*time.Second)
	if err != nil {
		t.Fatalf("%s: %v", subj, err)
	}
	if _, err := mesh.ParseSigned(resp); err != nil {
		t.Fatalf("%s: the answer is not signed: %v", subj, err)
	}
	var rep wire.Reply
	if err := json.Unmarshal(resp.Data, &rep); err != nil {
		t.Fatal(err)
	}
	var w WHEPReply
	_ = json.Unmarshal(rep.Data, &w)
	return w, rep.Error
}

// The node's own checks, before any encoder or peer connection: an unknown
// key, a tier below 1, an oversized request, a bad session id, a method that
// does not fit and a stream it does not have are refused with the status
// WHEP answers and a message naming what was wrong.
func TestServiceRefusesBeforeWorking(t *testing.T) {
	r := newServiceRig(t)
	post, _ := json.Marshal(WHEPRequest{Method: http.MethodPost, ContentType: "application/sdp", Body: "v=0"})
	cases := []struct {
		name, subj, key string
		data            []byte
		status          int
		words           string
	}{
		{"unknown key", subjects.MediaWHEP(r.chev, "test"), "USTRANGER", post, http.StatusForbidden, "unknown key"},
		{"tier 0", subjects.MediaWHEP(r.chev, "test"), "UNODE0", post, http.StatusForbidden, "needs tier 1"},
		{"tier 0 relay", subjects.MediaRelay(r.chev, "test"), "UNODE0", []byte(`{}`), http.StatusForbidden, "needs tier 1"},
		{"too large", subjects.MediaWHEP(r.chev, "test"), "UVIEWER", make([]byte, MaxRequest+1), http.StatusRequestEntityTooLarge, "at most"},
		{"no such stream", subjects.MediaWHEP(r.chev, "nope"), "UVIEWER", post, http.StatusNotFound, `no stream "nope"`},
		{"bad session id", subjects.MediaSession(r.chev, "test", "XYZ"), "UVIEWER", []byte(`{"method":"DELETE"}`), http.StatusBadRequest, "32 lowercase hex"},
		{"someone else's session", subjects.MediaSession(r.chev, "test", strings.Repeat("a", 32)), "UVIEWER", []byte(`{"method":"DELETE"}`), http.StatusNotFound, "never opened by this key"},
		{"bad JSON", subjects.MediaWHEP(r.chev, "test"), "UVIEWER", []byte(`{`), http.StatusBadRequest, "media request"},
	}
	for _, c := range cases {
		rep, werr := r.ask(t, c.subj, c.key, c.data)
		if werr == nil || rep.Status != c.status || !strings.Contains(werr.Msg, c.words) {
			t.Errorf("%s: status %d, error %+v; want %d naming %q", c.name, rep.Status, werr, c.status, c.words)
		}
	}
	// The list is for any known key, tier 0 included.
	rep, werr := r.ask(t, subjects.MediaList(r.chev), "UNODE0", []byte(`{}`))
	if werr != nil {
		t.Fatalf("list as a tier-0 key: %v (%+v)", werr, rep)
	}
	if r.svc.enc["test"].Running() {
		t.Error("a refused request started the encoder")
	}
}
