package wire

import "encoding/json"

// Request is the body of a command published on rn.<prefix>.cmd.<verb> (or
// rn.cmd.<verb>). Verb repeats the subject's last token so a request can be
// logged, stored or replayed without its subject.
type Request struct {
	Verb string          `json:"verb"`
	Args json.RawMessage `json:"args,omitempty"` // a JSON object; absent or null means no arguments
	ID   string          `json:"id"`             // chosen by the sender, echoed in every Result
	From string          `json:"from,omitempty"` // the sender's display name; authority comes from the Rn-From header, never from this
	// TimeoutMs is how long the sender will wait; the node gives up on the
	// work at that point (0: the node's default).
	TimeoutMs int64 `json:"timeout_ms,omitempty"`
	// Input is the structured output of an earlier step in a composition
	// (`a:x -> b:y`): the JSON of the earlier gather. exec feeds it to the
	// program's stdin when no stdin is given.
	Input json.RawMessage `json:"input,omitempty"`
}

// Result statuses.
const (
	StatusOK     = "ok"     // the verb ran; Output and Text hold its answer
	StatusError  = "error"  // the verb was refused or failed; Error says why
	StatusDenied = "denied" // the caller's trust tier is below what the verb needs
)

// Result is a node's answer to one Request.
//
// With Status ok, Output is the verb's answer as JSON and Text its rendering
// for people. With error or denied, Error is set; Output may still carry what
// the verb produced before it failed (exec killed at its timeout returns the
// output read so far).
type Result struct {
	ID     string          `json:"id,omitempty"` // the Request's ID
	Status string          `json:"status"`
	Output json.RawMessage `json:"output,omitempty"`
	Text   string          `json:"text,omitempty"`
	Error  *Error          `json:"error,omitempty"`
	Ms     float64         `json:"ms"` // time the node spent on the request, in milliseconds
	// Chevron and Name identify the answering node, so one inbox can gather
	// the answers of many.
	Chevron string `json:"chevron,omitempty"`
	Name    string `json:"name,omitempty"`
}

// Error codes of command results, beside CodeBadRequest, CodeInternal,
// CodeDenied and CodeNotFound.
const (
	CodeUnknownVerb = "unknown_verb" // no such verb in the node's catalogue
	CodeTimeout     = "timeout"      // the request's deadline or the verb's own timeout passed
	CodeCanceled    = "canceled"     // the node stopped the work (shutting down)
	CodeUnavailable = "unavailable"  // the verb needs something this node does not have (no file store, no host)
	CodeFailed      = "failed"       // the verb ran and failed: its message says how
)
