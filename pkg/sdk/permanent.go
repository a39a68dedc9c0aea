package sdk

import (
	"errors"
	"fmt"
)

// ErrPermanent marks a handler error that another attempt cannot mend,
// such as a payload that does not parse: the master ends the task failed
// at once instead of retrying it. Match it with errors.Is.
var ErrPermanent = errors.New("permanent")

// permanentError wraps an error so that errors.Is(err, ErrPermanent) holds
// while its message stays the handler's own.
type permanentError struct{ err error }

func (p *permanentError) Error() string { return p.err.Error() }
func (p *permanentError) Unwrap() []error {
	return []error{p.err, ErrPermanent}
}

// Permanent marks err as not worth retrying (see ErrPermanent). It returns
// nil for a nil err.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

// Permanentf is Permanent(fmt.Errorf(format, args...)).
func Permanentf(format string, args ...any) error {
	return Permanent(fmt.Errorf(format, args...))
}
