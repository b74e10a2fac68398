package alibi

// Error is a failed call: its status and the library's message naming the call and argument.
// Raw calls return it for a failed status, with the message read in their C wrapper on the
// call's own OS thread (local.i).
type Error struct {
	Status  Status
	Message string
}

func (e *Error) Error() string { return e.Status.String() + ": " + e.Message }

func newError(s Status, message string) error { return &Error{Status: s, Message: message} }
