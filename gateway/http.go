package gateway

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/robonet-mesh/robonet/intents"
	"github.com/robonet-mesh/robonet/wire"
)

// maxBody bounds every API request body.
const maxBody = 64 << 10

// Error codes of API answers ({"error","code"}); API.md lists them.
const (
	CodeBadRequest       = "bad_request"
	CodeUnauthenticated  = "unauthenticated"
	CodeDenied           = "denied"
	CodeCrossOrigin      = "cross_origin"
	CodeNotFound         = "not_found"
	CodeMethodNotAllowed = "method_not_allowed"
	CodeTooLarge         = "too_large"
	CodeNoMatch          = "no_match"
	CodeRateLimited      = "rate_limited"
	CodeUpstream         = "upstream"
	CodeUnavailable      = "unavailable"
	CodeTimeout          = "timeout"
	CodeInternal         = "internal"
	CodeNotUnderstood    = "not_understood" // ask: the planner did not understand the sentence
	CodeRefused          = "refused"        // ask: the sentence tries shell or a program never planned from words
	CodeAmbiguous        = "ambiguous"      // ask: several readings, none sure enough; readings lists them
)

// apiError is an API error answer.
type apiError struct {
	Status int    `json:"-"`
	Msg    string `json:"error"`
	Code   string `json:"code"`
	// Readings are the planner's best readings of an ask sentence it was
	// not sure enough of (code "ambiguous"): send one's plan back with
	// "confirm": true to run it.
	Readings []intents.Reading `json:"readings,omitempty"`
}

func (e *apiError) Error() string { return e.Msg }

func errorf(status int, code, format string, args ...any) *apiError {
	return &apiError{Status: status, Code: code, Msg: fmt.Sprintf(format, args...)}
}

// Role ranks, lowest first; "" (public) is 0.
func roleRank(role string) int {
	switch role {
	case wire.RoleObserver:
		return 1
	case wire.RoleOperator:
		return 2
	case wire.RoleAdmin:
		return 3
	}
	return 0
}

// minRole is the lower of two roles.
func minRole(a, b string) string {
	if roleRank(a) <= roleRank(b) {
		return a
	}
	return b
}

// Handle serves pattern (a net/http ServeMux pattern) with h for principals
// of role need or above (wire.RoleObserver: anyone logged in; "": no auth at
// all). h reads the principal with PrincipalFrom. Call it before Start.
func (g *Gateway) Handle(pattern string, h http.Handler, need string) {
	if need == "" {
		g.mux.Handle(pattern, h)
		return
	}
	g.mux.Handle(pattern, g.authed(need, func(w http.ResponseWriter, r *http.Request, p *Principal) {
		h.ServeHTTP(w, r.WithContext(withPrincipal(r.Context(), p)))
	}))
}

// routes registers the gateway's own handlers.
func (g *Gateway) routes() {
	static := staticHandler()
	g.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		static.ServeHTTP(w, r)
	})
	g.mux.HandleFunc("GET /login", g.serveLoginLink)
	g.mux.HandleFunc("POST /logout", g.serveLogout)
	g.mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, errorf(http.StatusNotFound, CodeNotFound, "no API route %s", r.URL.Path))
	})
	g.api("GET", "/api/me", wire.RoleObserver, g.apiMe)
	g.api("GET", "/api/nodes", wire.RoleObserver, g.apiNodes)
	g.api("GET", "/api/status", wire.RoleObserver, g.apiStatus)
	g.api("GET", "/api/alerts", wire.RoleObserver, g.apiAlerts)
	g.api("GET", "/api/approvals", wire.RoleObserver, g.apiApprovals)
	g.api("GET", "/api/commands", wire.RoleObserver, g.apiCommands)
	g.api("POST", "/api/run", wire.RoleObserver, g.apiRun)
	g.api("POST", "/api/ask", wire.RoleObserver, g.apiAsk)
	g.api("GET", "/api/live", wire.RoleObserver, g.live.serve)
}

// api registers an authenticated API route, answering other methods with a
// JSON 405.
func (g *Gateway) api(method, path, need string, h func(http.ResponseWriter, *http.Request, *Principal)) {
	g.mux.Handle(method+" "+path, g.authed(need, h))
	g.mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", method)
		writeError(w, errorf(http.StatusMethodNotAllowed, CodeMethodNotAllowed, "%s %s: use %s", r.Method, path, method))
	})
}

// handler wraps the routes with the headers and checks every answer gets.
func (g *Gateway) handler() http.Handler {
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, errorf(http.StatusForbidden, CodeCrossOrigin, "cross-origin %s %s refused (Origin %q)", r.Method, r.URL.Path, r.Header.Get("Origin")))
	}))
	inner := cop.Handler(g.mux)
	return g.hostChecked(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		if g.TLS() {
			h.Set("Strict-Transport-Security", "max-age=31536000")
		}
		if strings.HasPrefix(r.URL.Path, "/api/") {
			h.Set("Cache-Control", "no-store")
		}
		if bearerWHEP(r) {
			// A WHEP player on another origin (what CORS is for): its bearer
			// token is no ambient credential a foreign page could borrow,
			// and with it the session cookie is not read (authenticate).
			g.mux.ServeHTTP(w, r)
			return
		}
		inner.ServeHTTP(w, r)
	}))
}

// writeJSON answers v as JSON with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		writeError(w, errorf(http.StatusInternalServerError, CodeInternal, "encoding the answer: %v", err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// writeError answers err ({"error","code"} with its status).
func writeError(w http.ResponseWriter, err error) {
	var ae *apiError
	if !errors.As(err, &ae) {
		ae = errorf(http.StatusInternalServerError, CodeInternal, "%v", err)
	}
	b, _ := json.Marshal(ae)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(ae.Status)
	_, _ = w.Write(append(b, '\n'))
}

// decodeBody reads r's JSON body (at most maxBody, no unknown fields, one
// value) into v.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) *apiError {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		return errorf(http.StatusUnsupportedMediaType, CodeBadRequest, "Content-Type %q: want application/json", ct)
	}
	// A body trickled in byte by byte holds a connection: 30 s is plenty
	// for 64 KiB.
	// The deadline is lifted once the body is read: a streamed answer may
	// take minutes, and net/http's watch for a closed connection must not
	// time out meanwhile.
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Now().Add(30 * time.Second))
	defer func() { _ = rc.SetReadDeadline(time.Time{}) }()
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return errorf(http.StatusRequestEntityTooLarge, CodeTooLarge, "request body over %d bytes", maxBody)
		}
		return errorf(http.StatusBadRequest, CodeBadRequest, "request body: %v", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errorf(http.StatusBadRequest, CodeBadRequest, "request body: more than one JSON value")
	}
	return nil
}

// bearerWHEP reports whether r is a WHEP request (POST, PATCH, DELETE of
// /media/<chevron>/<stream>/whep[/<session>]) authenticated by a bearer
// token: cross-origin protection does not apply to it.
func bearerWHEP(r *http.Request) bool {
	if r.Header.Get("Authorization") == "" || !strings.HasPrefix(r.URL.Path, "/media/") {
		return false
	}
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/media/"), "/")
	return (len(parts) == 3 || len(parts) == 4) && parts[2] == "whep"
}
