package colonize

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// The twelve steps, in order. uncolonize reports the first four and then
// its own ("stop", "remove", "revoke").
const (
	StepConnect    = "connect"
	StepHostKey    = "host key"
	StepAuth       = "authenticate"
	StepPrivilege  = "privilege"
	StepDetect     = "detect"
	StepPreflight  = "preflight"
	StepUpload     = "upload"
	StepConfig     = "config"
	StepIdentity   = "identity"
	StepCredential = "join credential"
	StepService    = "service"
	StepWait       = "wait for join"
	StepRollback   = "rollback"
	StepStop       = "stop"
	StepRemove     = "remove"
	StepRevoke     = "revoke"
	StepDone       = "done"
)

// Steps lists the twelve steps of colonize in order.
var Steps = []string{StepConnect, StepHostKey, StepAuth, StepPrivilege, StepDetect, StepPreflight,
	StepUpload, StepConfig, StepIdentity, StepCredential, StepService, StepWait}

// Outcomes of a step.
const (
	StatusOK        = "ok"
	StatusChanged   = "changed"
	StatusUnchanged = "unchanged"
	StatusSkipped   = "skipped"
	StatusFailed    = "failed"
	StatusRunning   = "running" // a step has begun (events only, never a result)
)

// Event is one step's report for one host; --json prints one per line.
// The last event of a host has Step "done" and Status its overall result:
// "ok", "changed", "failed" or "unreachable".
type Event struct {
	Time    time.Time `json:"time"`
	Host    string    `json:"host"`
	Step    string    `json:"step"`
	Status  string    `json:"status"`
	TookMs  float64   `json:"took_ms"`
	Detail  string    `json:"detail,omitempty"`
	Diff    string    `json:"diff,omitempty"`    // --check: what would change in a file
	Error   string    `json:"error,omitempty"`   // a failed step: what went wrong
	Remedy  string    `json:"remedy,omitempty"`  // a failed step: what to do about it
	Chevron string    `json:"chevron,omitempty"` // done: the node's address once joined
	Pubkey  string    `json:"pubkey,omitempty"`  // identity and done: the node's public key
	Bytes   int64     `json:"bytes,omitempty"`   // upload: bytes sent
}

// Result is how one host ended.
type Result struct {
	Host        string
	Status      string // "ok", "changed", "failed", "unreachable"
	Chevron     string
	Pubkey      string
	Err         error
	Took        time.Duration
	Counts      map[string]int // step outcomes: ok, changed, unchanged, skipped, failed
	FailedStep  string
	BytesSent   int64
	RolledBack  bool
	Unreachable bool
}

// Failed reports whether the host did not end as asked.
func (r Result) Failed() bool { return r.Status == StatusFailed || r.Status == "unreachable" }

// Recap summarises results the way an operator scans them: one line per
// host, then the totals.
func Recap(results []Result) string {
	var b strings.Builder
	rs := append([]Result(nil), results...)
	sort.Slice(rs, func(i, j int) bool { return rs[i].Host < rs[j].Host })
	width := 4
	for _, r := range rs {
		width = max(width, len(r.Host))
	}
	var ok, changed, failed, unreachable int
	for _, r := range rs {
		c := r.Counts
		fmt.Fprintf(&b, "%-*s : ok=%-2d changed=%-2d unchanged=%-2d skipped=%-2d failed=%-2d %s", width, r.Host,
			c[StatusOK], c[StatusChanged], c[StatusUnchanged], c[StatusSkipped], c[StatusFailed], r.Took.Round(10*time.Millisecond))
		switch r.Status {
		case "unreachable":
			unreachable++
			fmt.Fprintf(&b, "  UNREACHABLE: %v", r.Err)
		case StatusFailed:
			failed++
			fmt.Fprintf(&b, "  FAILED at %s: %v", r.FailedStep, r.Err)
			if r.RolledBack {
				b.WriteString(" (rolled back)")
			}
		case StatusChanged:
			changed++
			if r.Chevron != "" {
				fmt.Fprintf(&b, "  joined as %s", r.Chevron)
			}
		default:
			ok++
			if r.Chevron != "" {
				fmt.Fprintf(&b, "  live as %s", r.Chevron)
			}
		}
		b.WriteByte('\n')
	}
	fmt.Fprintf(&b, "hosts=%d ok=%d changed=%d failed=%d unreachable=%d\n", len(rs), ok, changed, failed, unreachable)
	return b.String()
}
