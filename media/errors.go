package media

import (
	"fmt"
	"net/http"
)

// Error is a media failure with the HTTP status WHEP answers with.
//
// Status is 400 for a bad offer, 404 for an unknown stream or session, 409
// when the stream is not live yet, 412/428 for If-Match, 415 for a content
// type, 422 for an ICE restart (unsupported), 403 for a viewer not allowed,
// 503 for too many sessions or a failed encoder, 504 for a timeout.
type Error struct {
	Status     int    // the HTTP status
	Code       string // wire.Code* where one fits ("denied", "not_found", …) else a short snake_case word
	Msg        string // for the user: says what and what to do
	RetryAfter int    // seconds, 0 = none (409 and 503 set it)
}

func (e *Error) Error() string {
	if e.Code == "" {
		return fmt.Sprintf("%d %s: %s", e.Status, http.StatusText(e.Status), e.Msg)
	}
	return fmt.Sprintf("%d %s (%s): %s", e.Status, http.StatusText(e.Status), e.Code, e.Msg)
}

// errorf builds an *Error with a formatted message.
func errorf(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Msg: fmt.Sprintf(format, args...)}
}
