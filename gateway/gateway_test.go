package gateway_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/robonet-mesh/robonet/gateway"
	"github.com/robonet-mesh/robonet/internal/testmesh"
	"github.com/robonet-mesh/robonet/mesh"
	"github.com/robonet-mesh/robonet/wire"
)

// testClock is a clock the gateway reads: real time plus a skew.
type testClock struct{ skew atomic.Int64 }

func (c *testClock) now() time.Time          { return time.Now().Add(time.Duration(c.skew.Load())) }
func (c *testClock) advance(d time.Duration) { c.skew.Add(int64(d)) }

// fixture is a real swarm with a gateway on its node 0.
type fixture struct {
	t     testing.TB
	s     *testmesh.Swarm
	g     *gateway.Gateway
	admin *mesh.Client
	clock *testClock
}

func newFixture(t testing.TB, nodes int) *fixture {
	t.Helper()
	return newFixtureWith(t, nodes, nil)
}

// newFixtureWith lets adjust the gateway's options.
func newFixtureWith(t testing.TB, nodes int, adjust func(*gateway.Options)) *fixture {
	t.Helper()
	s := testmesh.Start(t, nodes)
	if nodes > 1 {
		s.WaitAlive(30 * time.Second)
	}
	f := &fixture{t: t, s: s, admin: s.Client(0), clock: &testClock{}}
	o := gateway.Options{Node: s.Node(0), Addr: "127.0.0.1:0", Explicit: true, Now: f.clock.now,
		Logger: testmesh.Logger(t, new(atomic.Bool))}
	if adjust != nil {
		adjust(&o)
	}
	f.g = serveGateway(t, o)
	return f
}

func serveGateway(t testing.TB, o gateway.Options) *gateway.Gateway {
	t.Helper()
	g, err := gateway.New(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := g.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return g
}

// credential asks the gateway for a link or token as the user whose signer
// and key c holds, sent over the admin's connection (a user's own NATS
// permissions are the node's business, not the gateway's).
func (f *fixture) credential(c *mesh.Client, kind, role string, ttl time.Duration) (gateway.Credential, error) {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	chev := f.s.Node(0).Chevron()
	return gateway.RequestCredential(ctx, gateway.Requester{Conn: f.admin.Conn(), Signer: c.Signer(), KeyPair: c.KeyPair(),
		NodeKey: f.s.Node(0).Pubkey(), Chevron: chev}, gateway.CredentialRequest{Kind: kind, Role: role, TTL: ttl})
}

func (f *fixture) token(c *mesh.Client, role string) string {
	f.t.Helper()
	cred, err := f.credential(c, gateway.KindToken, role, time.Hour)
	if err != nil {
		f.t.Fatal(err)
	}
	if !strings.HasPrefix(cred.Token, gateway.TokenPrefix) || cred.URL != "" {
		f.t.Fatalf("token credential: %+v", cred)
	}
	return cred.Token
}

func (f *fixture) link(c *mesh.Client, role string) string {
	f.t.Helper()
	cred, err := f.credential(c, gateway.KindLogin, role, time.Hour)
	if err != nil {
		f.t.Fatal(err)
	}
	if !strings.HasPrefix(cred.URL, f.g.URL()+"/login?t=") {
		f.t.Fatalf("login credential: %+v (gateway %s)", cred, f.g.URL())
	}
	return cred.URL
}

// browser logs in with a link and returns a client holding the cookie.
func (f *fixture) browser(c *mesh.Client, role string) *http.Client {
	f.t.Helper()
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar, Timeout: 30 * time.Second}
	resp, err := hc.Get(f.link(c, role))
	if err != nil {
		f.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != "/" {
		f.t.Fatalf("login: %d at %s", resp.StatusCode, resp.Request.URL)
	}
	return hc
}

type answer struct {
	status int
	header http.Header
	body   []byte
}

func (a answer) code() string {
	var e struct {
		Error, Code string
	}
	_ = json.Unmarshal(a.body, &e)
	return e.Code
}

// do sends one request; hdr is name, value pairs.
func (f *fixture) do(hc *http.Client, method, path, body string, hdr ...string) answer {
	f.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, f.g.URL()+path, rd)
	if err != nil {
		f.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	resp, err := hc.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		f.t.Fatal(err)
	}
	return answer{status: resp.StatusCode, header: resp.Header, body: b}
}

func bearer(tok string) []string { return []string{"Authorization", "Bearer " + tok} }

// TestRESTRoutesAnswerWithATokenAndWithACookie reads every GET route of
// API.md both ways and checks the JSON is the CLI's shape.
func TestRESTRoutesAnswerWithATokenAndWithACookie(t *testing.T) {
	f := newFixture(t, 1)
	tok := f.token(f.admin, "")
	hc := f.browser(f.admin, wire.RoleOperator)
	chev := f.s.Node(0).Chevron().String()
	for _, way := range []struct {
		name string
		hc   *http.Client
		hdr  []string
	}{{"token", nil, bearer(tok)}, {"cookie", hc, nil}} {
		t.Run(way.name, func(t *testing.T) {
			get := func(path string, v any) {
				t.Helper()
				a := f.do(way.hc, "GET", path, "", way.hdr...)
				if a.status != http.StatusOK || !strings.HasPrefix(a.header.Get("Content-Type"), "application/json") {
					t.Fatalf("GET %s: %d %s", path, a.status, a.body)
				}
				if a.header.Get("X-Content-Type-Options") != "nosniff" || !strings.Contains(a.header.Get("Content-Security-Policy"), "default-src 'self'") {
					t.Fatalf("GET %s: security headers %v", path, a.header)
				}
				if err := json.Unmarshal(a.body, v); err != nil {
					t.Fatalf("GET %s: %v\n%s", path, err, a.body)
				}
			}
			var me struct{ User, Role, Node, Chevron, Via string }
			get("/api/me", &me)
			adminKey, _ := f.admin.KeyPair().PublicKey()
			wantRole := map[string]string{"token": wire.RoleAdmin, "cookie": wire.RoleOperator}[way.name]
			wantVia := map[string]string{"token": "token", "cookie": "session"}[way.name]
			if me.User != adminKey || me.Role != wantRole || me.Chevron != chev || me.Via != wantVia {
				t.Fatalf("me = %+v", me)
			}
			var nodes []wire.Member
			get("/api/nodes", &nodes)
			if len(nodes) != 1 || nodes[0].Chevron != chev || nodes[0].Pubkey != f.s.Node(0).Pubkey() {
				t.Fatalf("nodes = %+v", nodes)
			}
			var st wire.Status
			get("/api/status", &st)
			if st.Chevron != chev || st.Members != 1 {
				t.Fatalf("status = %+v", st)
			}
			var alerts mesh.AlertsView
			get("/api/alerts", &alerts)
			if alerts.Nodes != 1 || alerts.Alerts == nil {
				t.Fatalf("alerts = %+v", alerts)
			}
			var approvals []mesh.ApprovalView
			get("/api/approvals?all=1", &approvals)
			if approvals == nil {
				t.Fatal("approvals: want [] not null")
			}
			var cmds []struct{ Name, Risk string }
			get("/api/commands", &cmds)
			if len(cmds) < 5 {
				t.Fatalf("commands = %+v", cmds)
			}
			var res mesh.GatherResult
			a := f.do(way.hc, "POST", "/api/run", `{"selector":"all","verb":"ping"}`, way.hdr...)
			if a.status != http.StatusOK || json.Unmarshal(a.body, &res) != nil || !res.OK() || res.Summary.Total != 1 {
				t.Fatalf("run ping: %d %s", a.status, a.body)
			}
		})
	}
	// Unknown routes and wrong methods answer JSON errors.
	if a := f.do(nil, "GET", "/api/nope", "", bearer(tok)...); a.status != http.StatusNotFound || a.code() != gateway.CodeNotFound {
		t.Fatalf("unknown route: %d %s", a.status, a.body)
	}
	if a := f.do(nil, "DELETE", "/api/nodes", "", bearer(tok)...); a.status != http.StatusMethodNotAllowed || a.code() != gateway.CodeMethodNotAllowed {
		t.Fatalf("DELETE /api/nodes: %d %s", a.status, a.body)
	}
	if a := f.do(nil, "GET", "/api/approvals?all=maybe", "", bearer(tok)...); a.status != http.StatusBadRequest {
		t.Fatalf("all=maybe: %d %s", a.status, a.body)
	}
	// The dashboard itself is public: it holds no data.
	if a := f.do(nil, "GET", "/", ""); a.status != http.StatusOK || !strings.Contains(string(a.body), "<html") {
		t.Fatalf("GET /: %d %s", a.status, a.body)
	}
}

// TestRunChecksItsRequest refuses bad requests before anything is sent.
func TestRunChecksItsRequest(t *testing.T) {
	f := newFixture(t, 1)
	tok := f.token(f.admin, "")
	for _, c := range []struct {
		body   string
		status int
		code   string
	}{
		{`{"selector":"all","verb":"nope"}`, 400, gateway.CodeBadRequest},
		{`{"selector":"","verb":"ping"}`, 400, gateway.CodeBadRequest},
		{`{"selector":"1..2","verb":"ping"}`, 400, gateway.CodeBadRequest},
		{`{"selector":"all","verb":"ping","timeout":"1h"}`, 400, gateway.CodeBadRequest},
		{`{"selector":"all","verb":"ping","extra":1}`, 400, gateway.CodeBadRequest},
		{`{"selector":"all","verb":"ping"} {}`, 400, gateway.CodeBadRequest},
		{`{"selector":"all","verb":"gauge","args":{"metric":"cpu"},"words":["cpu"]}`, 400, gateway.CodeBadRequest},
		{`{"selector":"caps=nothing-has-this","verb":"ping"}`, 422, gateway.CodeNoMatch},
		{`{"selector":"all","verb":"ping","words":["` + strings.Repeat("x", 70<<10) + `"]}`, 413, gateway.CodeTooLarge},
	} {
		if a := f.do(nil, "POST", "/api/run", c.body, bearer(tok)...); a.status != c.status || a.code() != c.code {
			t.Errorf("%.80s: %d %s, want %d %s", c.body, a.status, a.body, c.status, c.code)
		}
	}
}

// TestObserverIsRefusedAMutatingRunAsInTheCLI: the node judges the
// browser's command by the user's role, with the same words it uses for the
// user's own CLI.
func TestObserverIsRefusedAMutatingRunAsInTheCLI(t *testing.T) {
	f := newFixture(t, 1)
	obs := f.s.User(0, "olga", wire.RoleObserver)
	op := f.s.User(0, "oscar", wire.RoleOperator)
	args := `{"op":"set","key":"gw.test","value":"hi"}`
	body := `{"selector":"1","verb":"config","args":` + args + `}`
	run := func(tok string) mesh.NodeResult {
		t.Helper()
		var res mesh.GatherResult
		a := f.do(nil, "POST", "/api/run", body, bearer(tok)...)
		if a.status != http.StatusOK || json.Unmarshal(a.body, &res) != nil || len(res.Results) != 1 {
			t.Fatalf("run: %d %s", a.status, a.body)
		}
		return res.Results[0]
	}
	// What the CLI gets: the same request signed by the observer's own key.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cli, err := mesh.NewClient(f.admin.Conn()).WithSigner(obs.Signer()).Gather(ctx,
		mesh.GatherRequest{Selector: "1", Verb: "config", Args: json.RawMessage(args), Timeout: 10 * time.Second}, nil)
	if err != nil || len(cli.Results) != 1 {
		t.Fatalf("cli: %+v %v", cli, err)
	}
	got := run(f.token(obs, ""))
	if got.Status != wire.StatusDenied || got.Status != cli.Results[0].Status || got.Code != cli.Results[0].Code ||
		!strings.Contains(got.Error, "(observer) has tier 1") {
		t.Fatalf("observer through the gateway: %+v; through the CLI: %+v", got, cli.Results[0])
	}
	// An operator's token asked as observer is an observer.
	if got := run(f.token(op, wire.RoleObserver)); got.Status != wire.StatusDenied {
		t.Fatalf("operator token as observer: %+v", got)
	}
	// An observer may not ask for more than it is.
	if _, err := f.credential(obs, gateway.KindToken, wire.RoleOperator, time.Hour); !errors.Is(err, gateway.ErrGateway) || !strings.Contains(err.Error(), "above") {
		t.Fatalf("observer asking for operator: %v", err)
	}
	// The operator runs it.
	if got := run(f.token(op, "")); got.Status != wire.StatusOK {
		t.Fatalf("operator: %+v", got)
	}
}

// TestLoginLinksWorkOnceAndBriefly covers expired, reused and forged links
// and the cookie's attributes.
func TestLoginLinksWorkOnceAndBriefly(t *testing.T) {
	f := newFixture(t, 1)
	link := f.link(f.admin, "")
	// Followed from another site: refused (login CSRF), and not used up.
	if a := f.do(nil, "GET", strings.TrimPrefix(link, f.g.URL()), "", "Sec-Fetch-Site", "cross-site"); a.status != http.StatusForbidden {
		t.Fatalf("login link from another site: %d", a.status)
	}
	a := f.do(nil, "GET", strings.TrimPrefix(link, f.g.URL()), "", "Sec-Fetch-Site", "none")
	if a.status != http.StatusSeeOther || a.header.Get("Location") != "/" {
		t.Fatalf("login: %d %v", a.status, a.header)
	}
	ck := a.header.Get("Set-Cookie")
	for _, want := range []string{gateway.SessionCookie + "=", "HttpOnly", "SameSite=Strict", "Path=/"} {
		if !strings.Contains(ck, want) {
			t.Fatalf("Set-Cookie %q lacks %q", ck, want)
		}
	}
	if strings.Contains(ck, "Secure") {
		t.Fatalf("Set-Cookie %q: Secure on plain http would never be sent back", ck)
	}
	if a := f.do(nil, "GET", strings.TrimPrefix(link, f.g.URL()), ""); a.status != http.StatusUnauthorized {
		t.Fatalf("reused link: %d", a.status)
	}
	forged := link[:len(link)-4] + "AAAA"
	if a := f.do(nil, "GET", strings.TrimPrefix(forged, f.g.URL()), ""); a.status != http.StatusUnauthorized {
		t.Fatalf("forged link: %d", a.status)
	}
	if a := f.do(nil, "GET", "/login?t=<script>", ""); a.status != http.StatusUnauthorized || strings.Contains(string(a.body), "<script>") {
		t.Fatalf("junk link: %d %s", a.status, a.body)
	}
	late := f.link(f.admin, "")
	f.clock.advance(61 * time.Second)
	if a := f.do(nil, "GET", strings.TrimPrefix(late, f.g.URL()), ""); a.status != http.StatusUnauthorized {
		t.Fatalf("expired link: %d", a.status)
	}
	// A cookie that is not a session, and logout.
	if a := f.do(nil, "GET", "/api/me", "", "Cookie", gateway.SessionCookie+"=forged"); a.status != http.StatusUnauthorized || a.code() != gateway.CodeUnauthenticated {
		t.Fatalf("forged cookie: %d %s", a.status, a.body)
	}
	hc := f.browser(f.admin, "")
	if a := f.do(hc, "GET", "/api/me", ""); a.status != http.StatusOK {
		t.Fatalf("me: %d", a.status)
	}
	if a := f.do(hc, "POST", "/logout", ""); a.status != http.StatusOK {
		t.Fatalf("logout: %d %s", a.status, a.body)
	}
	if a := f.do(hc, "GET", "/api/me", ""); a.status != http.StatusUnauthorized {
		t.Fatalf("me after logout: %d", a.status)
	}
}

// TestBearerTokensAreChecked covers a missing, forged, foreign and expired
// token, and a session ending when its delegation does.
func TestBearerTokensAreChecked(t *testing.T) {
	f := newFixture(t, 1)
	tok := f.token(f.admin, wire.RoleObserver)
	if a := f.do(nil, "GET", "/api/nodes", ""); a.status != http.StatusUnauthorized || a.code() != gateway.CodeUnauthenticated {
		t.Fatalf("no token: %d %s", a.status, a.body)
	}
	if a := f.do(nil, "GET", "/api/nodes", "", "Authorization", "Basic Zm9vOmJhcg=="); a.status != http.StatusUnauthorized {
		t.Fatalf("basic auth: %d %s", a.status, a.body)
	}
	// Flip one character in the middle: the delegation's signature fails
	// or the encoding does.
	mid := len(tok) / 2
	flip := byte('A')
	if tok[mid] == 'A' {
		flip = 'B'
	}
	forged := tok[:mid] + string(flip) + tok[mid+1:]
	if a := f.do(nil, "GET", "/api/nodes", "", bearer(forged)...); a.status != http.StatusUnauthorized {
		t.Fatalf("forged token: %d %s", a.status, a.body)
	}
	if a := f.do(nil, "GET", "/api/nodes", "", bearer("rngw_"+strings.Repeat("A", 400))...); a.status != http.StatusUnauthorized {
		t.Fatalf("junk token: %d %s", a.status, a.body)
	}
	if a := f.do(nil, "GET", "/api/nodes", "", bearer(tok)...); a.status != http.StatusOK {
		t.Fatalf("good token: %d %s", a.status, a.body)
	}
	f.clock.advance(2 * time.Hour)
	if a := f.do(nil, "GET", "/api/nodes", "", bearer(tok)...); a.status != http.StatusUnauthorized || !strings.Contains(string(a.body), "expired") {
		t.Fatalf("expired token: %d %s", a.status, a.body)
	}
}

// TestFailedAuthIsRateLimited: a client that keeps guessing is slowed.
func TestFailedAuthIsRateLimited(t *testing.T) {
	f := newFixture(t, 1)
	var last answer
	for range 30 {
		last = f.do(nil, "GET", "/api/nodes", "", bearer("rngw_guess")...)
	}
	if last.status != http.StatusTooManyRequests || last.code() != gateway.CodeRateLimited || last.header.Get("Retry-After") == "" {
		t.Fatalf("after 30 failures: %d %s", last.status, last.body)
	}
	f.clock.advance(2 * time.Minute)
	if a := f.do(nil, "GET", "/api/nodes", "", bearer("rngw_guess")...); a.status != http.StatusUnauthorized {
		t.Fatalf("a minute later: %d %s", a.status, a.body)
	}
}

// TestCrossOriginPostIsRefused even with a valid session cookie.
func TestCrossOriginPostIsRefused(t *testing.T) {
	f := newFixture(t, 1)
	hc := f.browser(f.admin, "")
	body := `{"selector":"all","verb":"ping"}`
	if a := f.do(hc, "POST", "/api/run", body, "Origin", "http://evil.example"); a.status != http.StatusForbidden || a.code() != gateway.CodeCrossOrigin {
		t.Fatalf("cross-origin POST: %d %s", a.status, a.body)
	}
	if a := f.do(hc, "POST", "/api/run", body, "Sec-Fetch-Site", "cross-site"); a.status != http.StatusForbidden || a.code() != gateway.CodeCrossOrigin {
		t.Fatalf("Sec-Fetch-Site cross-site POST: %d %s", a.status, a.body)
	}
	if a := f.do(hc, "POST", "/logout", "", "Origin", "http://evil.example"); a.status != http.StatusForbidden {
		t.Fatalf("cross-origin logout: %d %s", a.status, a.body)
	}
	if a := f.do(hc, "POST", "/api/run", body, "Origin", f.g.URL(), "Sec-Fetch-Site", "same-origin"); a.status != http.StatusOK {
		t.Fatalf("same-origin POST: %d %s", a.status, a.body)
	}
}

// TestRunStreamsNDJSON: one line per node as it answers, then the whole.
func TestRunStreamsNDJSON(t *testing.T) {
	f := newFixture(t, 2)
	tok := f.token(f.admin, "")
	req, _ := http.NewRequest("POST", f.g.URL()+"/api/run", strings.NewReader(`{"selector":"all","verb":"ping"}`))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Accept", "application/x-ndjson")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("%d %v", resp.StatusCode, resp.Header)
	}
	var kinds []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		var line struct {
			Type   string
			Result *mesh.NodeResult
			Gather *mesh.GatherResult
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		kinds = append(kinds, line.Type)
		switch line.Type {
		case "result":
			if line.Result == nil || line.Result.Status != wire.StatusOK {
				t.Fatalf("result line %s", sc.Text())
			}
		case "done":
			if line.Gather == nil || line.Gather.Summary.OK != 2 {
				t.Fatalf("done line %s", sc.Text())
			}
		}
	}
	if strings.Join(kinds, ",") != "result,result,done" {
		t.Fatalf("lines %v", kinds)
	}
	// The token was made for node 0's gateway: node 1's refuses it.
	g1 := serveGateway(t, gateway.Options{Node: f.s.Node(1), Addr: "127.0.0.1:0", Explicit: true})
	r1, _ := http.NewRequest("GET", g1.URL()+"/api/nodes", nil)
	r1.Header.Set("Authorization", "Bearer "+tok)
	resp1, err := http.DefaultClient.Do(r1)
	if err != nil {
		t.Fatal(err)
	}
	b1, _ := io.ReadAll(resp1.Body)
	resp1.Body.Close()
	if resp1.StatusCode != http.StatusUnauthorized || !strings.Contains(string(b1), "node") {
		t.Fatalf("another node's token: %d %s", resp1.StatusCode, b1)
	}
}

// TestAskShowsThePlanThenRunsItWhenConfirmed.
func TestAskShowsThePlanThenRunsItWhenConfirmed(t *testing.T) {
	f := newFixture(t, 1)
	tok := f.token(f.admin, "")
	var plan struct {
		Plan     json.RawMessage
		DryRun   bool `json:"dry_run"`
		Tree     string
		Mutating []string
	}
	a := f.do(nil, "POST", "/api/ask", `{"text":"ping everything"}`, bearer(tok)...)
	if a.status != 200 || json.Unmarshal(a.body, &plan) != nil || !plan.DryRun || plan.Tree == "" || plan.Mutating == nil {
		t.Fatalf("dry run: %d %s", a.status, a.body)
	}
	var res struct {
		Steps []struct{ Status string }
	}
	a = f.do(nil, "POST", "/api/ask", `{"confirm":true,"plan":`+string(plan.Plan)+`}`, bearer(tok)...)
	if a.status != 200 || json.Unmarshal(a.body, &res) != nil || len(res.Steps) == 0 || res.Steps[0].Status != "ok" {
		t.Fatalf("run: %d %s", a.status, a.body)
	}
	if a := f.do(nil, "POST", "/api/ask", `{"text":""}`, bearer(tok)...); a.status != 400 {
		t.Fatalf("empty text: %d %s", a.status, a.body)
	}
	// A plan sent back without confirm is shown, not run (a reading the
	// user picked after a 422 ambiguous).
	a = f.do(nil, "POST", "/api/ask", `{"plan":`+string(plan.Plan)+`}`, bearer(tok)...)
	if a.status != 200 || json.Unmarshal(a.body, &plan) != nil || !plan.DryRun || plan.Tree == "" {
		t.Fatalf("a plan without confirm: %d %s", a.status, a.body)
	}
	for text, code := range map[string]string{
		"make me a sandwich":       "not_understood",
		"reboot the cameras":       "refused",
		"scan the europe nodes":    "not_understood",
		"ping all; rm -rf /":       "refused",
		"ping\u0000all everything": "bad_request",
	} {
		body, _ := json.Marshal(map[string]string{"text": text})
		a := f.do(nil, "POST", "/api/ask", string(body), bearer(tok)...)
		var e struct{ Error, Code string }
		if json.Unmarshal(a.body, &e) != nil || e.Code != code || (code != "bad_request" && a.status != 422) || e.Error == "" {
			t.Errorf("%q: %d %s, want code %s", text, a.status, a.body, code)
		}
	}
	// Streamed: plan, start, node, step, done.
	a = f.do(nil, "POST", "/api/ask", `{"text":"ping everything","confirm":true}`, append(bearer(tok), "Accept", "application/x-ndjson")...)
	var kinds []string
	for _, l := range bytes.Split(bytes.TrimSpace(a.body), []byte("\n")) {
		var line struct{ Type string }
		if err := json.Unmarshal(l, &line); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		kinds = append(kinds, line.Type)
	}
	if got := strings.Join(kinds, ","); got != "plan,start,node,step,done" {
		t.Fatalf("ask lines %s\n%s", got, a.body)
	}
}

// TestDefaultAddressTakenRunsWithoutAGateway, and an explicit one fails.
func TestDefaultAddressTakenRunsWithoutAGateway(t *testing.T) {
	s := testmesh.Start(t, 1)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	g := serveGateway(t, gateway.Options{Node: s.Node(0), Addr: ln.Addr().String()})
	if g.Addr() != "" || g.URL() != "" {
		t.Fatalf("a taken default address: serving on %q", g.Addr())
	}
	g2, err := gateway.New(gateway.Options{Node: s.Node(0), Addr: ln.Addr().String(), Explicit: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := g2.Start(context.Background()); !errors.Is(err, gateway.ErrListen) || !strings.Contains(err.Error(), ln.Addr().String()) {
		t.Fatalf("a taken explicit address: %v", err)
	}
	_ = g2.Shutdown(context.Background())
	for _, bad := range []string{"nope", "127.0.0.1", ":"} {
		if _, err := gateway.New(gateway.Options{Node: s.Node(0), Addr: bad}); !errors.Is(err, gateway.ErrOptions) {
			t.Errorf("address %q: %v", bad, err)
		}
	}
}

// TestLoginServiceRefusesBadRequests: wrong kind, role, ttl, and a
// delegation that does not match what was begun.
func TestLoginServiceRefusesBadRequests(t *testing.T) {
	f := newFixture(t, 1)
	for _, c := range []struct {
		kind, role string
		ttl        time.Duration
		want       string
	}{
		{"cookie", "", time.Hour, "kind"},
		{gateway.KindToken, "root", time.Hour, "role"},
		{gateway.KindToken, "", time.Second, "ttl"},
		{gateway.KindLogin, "", 30 * 24 * time.Hour, "ttl"},
	} {
		if _, err := f.credential(f.admin, c.kind, c.role, c.ttl); !errors.Is(err, gateway.ErrGateway) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v", c, err)
		}
	}
}

// TestSessionsEndWhenIdleOrTheUserIsRemoved: an idle session ends, and
// removing the user ends its sessions and tokens at once.
func TestSessionsEndWhenIdleOrTheUserIsRemoved(t *testing.T) {
	f := newFixtureWith(t, 1, func(o *gateway.Options) { o.SessionIdle = 10 * time.Minute })
	hc := f.browser(f.admin, "")
	for range 5 {
		f.clock.advance(9 * time.Minute) // used every 9 min: not idle
		if a := f.do(hc, "GET", "/api/me", ""); a.status != http.StatusOK {
			t.Fatalf("after %v: %d %s", time.Duration(f.clock.skew.Load()), a.status, a.body)
		}
	}
	// The link's delegation lasts an hour: the session ends with it.
	f.clock.advance(25 * time.Minute)
	if a := f.do(hc, "GET", "/api/me", ""); a.status != http.StatusUnauthorized {
		t.Fatalf("after the delegation: %d %s", a.status, a.body)
	}

	f.clock.advance(-70 * time.Minute) // back to real time
	hc = f.browser(f.admin, "")
	f.clock.advance(8 * time.Minute)
	if a := f.do(hc, "GET", "/api/me", ""); a.status != http.StatusOK {
		t.Fatalf("idle 8 min: %d %s", a.status, a.body)
	}
	f.clock.advance(11 * time.Minute)
	if a := f.do(hc, "GET", "/api/me", ""); a.status != http.StatusUnauthorized {
		t.Fatalf("idle 11 min: %d %s", a.status, a.body)
	}
	f.clock.advance(-19 * time.Minute)

	ursula := f.s.User(0, "ursula", wire.RoleOperator)
	tok := f.token(ursula, "")
	uhc := f.browser(ursula, "")
	if a := f.do(nil, "GET", "/api/nodes", "", bearer(tok)...); a.status != http.StatusOK {
		t.Fatalf("ursula's token: %d %s", a.status, a.body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ids, err := f.admin.Identities(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ids.RemoveUser(ctx, "ursula", "", time.Now()); err != nil {
		t.Fatal(err)
	}
	testmesh.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		if a := f.do(nil, "GET", "/api/nodes", "", bearer(tok)...); a.status != http.StatusUnauthorized {
			return fmt.Errorf("removed user's token: %d %s", a.status, a.body)
		}
		if a := f.do(uhc, "GET", "/api/nodes", ""); a.status != http.StatusUnauthorized {
			return fmt.Errorf("removed user's session: %d %s", a.status, a.body)
		}
		return nil
	})
}
