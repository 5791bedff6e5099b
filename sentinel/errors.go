package sentinel

import "errors"

// ErrConfig means a Config is invalid; the error wrapping it names the field
// and the value.
var ErrConfig = errors.New("invalid sentinel config")
