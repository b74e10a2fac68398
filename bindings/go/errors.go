package alibi

import (
	"errors"

	"alibi.dev/go/alibi/internal/capi"
)

// ErrClosed is what errors.Is finds in the error of a call on a closed Context, Tensor or Mask,
// or with one as an argument. The error itself is an *Error naming the object.
var ErrClosed = errors.New("alibi: use of a closed object")

// Error is every error of this package: the Status of the failed call and a message naming the
// call and the argument at fault, e.g. "NewTensor: ctx (Context) is closed" or
// "alibi_binding_forward_f32: k has 480 elements, ...". Use errors.As to read it.
type Error struct {
	Status  Status
	Message string
	closed  bool
}

// Error returns the status and the message, e.g. "null pointer: Context.Forward: mask (Mask) is nil".
func (e *Error) Error() string { return e.Status.String() + ": " + e.Message }

// Is makes errors.Is(err, ErrClosed) true for the error of a closed object.
func (e *Error) Is(target error) bool { return e.closed && target == ErrClosed }

func newError(s Status, message string) error { return &Error{Status: s, Message: message} }

// fromC turns a raw call's error (a *capi.Error or nil) into this package's.
func fromC(err error) error {
	var raw *capi.Error
	if errors.As(err, &raw) {
		return &Error{Status: Status(raw.Status), Message: raw.Message}
	}
	return err
}

// describe names an object in messages: its kind alone for a method's receiver (name ""), else
// the argument's name and kind.
func describe(kind, name string) string {
	if name == "" {
		return kind
	}
	return name + " (" + kind + ")"
}

func closedError(call, kind, name string) error {
	return &Error{Status: StatusNullPointer, Message: call + ": " + describe(kind, name) + " is closed", closed: true}
}

func nilError(call, what string) error {
	return newError(StatusNullPointer, call+": "+what+" is nil")
}
