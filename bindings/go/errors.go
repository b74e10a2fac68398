package alibi

import "runtime"

// Error is a failed call: its status and the library's message naming the call and argument.
type Error struct {
	Status  Status
	Message string
}

func (e *Error) Error() string { return e.Status.String() + ": " + e.Message }

// call runs a raw call and turns a failed status into an *Error. The goroutine stays on its OS
// thread meanwhile, so the thread-local alibi_last_error_message is that call's own.
func call(raw func() Status) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if s := raw(); s != StatusSuccess {
		return &Error{Status: s, Message: Alibi_last_error_message()}
	}
	return nil
}

func newError(s Status, message string) error { return &Error{Status: s, Message: message} }
