package intents

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrAmbiguous is wrapped by AmbiguousError: the planner found more than
// one reading of a sentence and was not sure enough of the best one to
// plan it (a mutating plan is never a guess).
var ErrAmbiguous = errors.New("the sentence has more than one reading")

// Reading is one way the planner understood a sentence: a plan that
// validates, how sure the planner is of it, and one line for people.
type Reading struct {
	Plan       Plan    `json:"plan"`
	Confidence float64 `json:"confidence"` // 0..1
	Label      string  `json:"label"`      // e.g. "scan caps=ai (read)"
}

// AmbiguousError lists the best readings of a sentence, best first (two
// or three), and why none was taken. A terminal offers them as a numbered
// choice; without one it is an error that names them.
type AmbiguousError struct {
	Sentence string
	Readings []Reading
	Reason   string // e.g. "the two best readings are close (0.46, 0.41)"
}

// Error names the readings so that a user without a terminal can say the
// sentence more precisely.
func (e *AmbiguousError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%v: %q: %s; it could mean", ErrAmbiguous, clip(e.Sentence), e.Reason)
	for i, r := range e.Readings {
		sep := ","
		if i == 0 {
			sep = ""
		}
		fmt.Fprintf(&b, "%s %d) %s [%s]", sep, i+1, r.Label, strconv.FormatFloat(r.Confidence, 'f', 2, 64))
	}
	b.WriteString(". Say it more precisely, or run ask on a terminal to pick one")
	return b.String()
}

// Unwrap makes errors.Is(err, ErrAmbiguous) true.
func (e *AmbiguousError) Unwrap() error { return ErrAmbiguous }
