package notifier

import (
	"context"
	"errors"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/natsnotifier/notifier/internal/wire"
)

// Errors returned by the Notifier. Dynamic cases wrap them with %w; test them
// with errors.Is.
var (
	// ErrClosed is returned by every method after Close.
	ErrClosed = errors.New("notifier: closed")
	// ErrTimeout is returned when an RPC's deadline passes before every
	// responder answered. It also matches context.DeadlineExceeded.
	ErrTimeout error = timeoutError{}
	// ErrNoResponders is returned by RPC when nothing on the bus is
	// registered for the call.
	ErrNoResponders = errors.New("notifier: no responders")
	// ErrInvalidName reports an object or cmd that is empty, longer than 128
	// bytes, or not a single NATS subject token.
	ErrInvalidName = errors.New("notifier: invalid name")
	// ErrInvalidID reports an id in a subject that is not a decimal int64
	// (a message from outside the library on a gateway subject).
	ErrInvalidID = errors.New("notifier: invalid id")
	// ErrInvalidDestination reports a nil or non-comparable destination.
	ErrInvalidDestination = errors.New("notifier: invalid destination")
	// ErrInvalidWeight reports a slice weight that is negative, NaN or infinite.
	ErrInvalidWeight = errors.New("notifier: invalid weight")
	// ErrNotRegistered reports an unregistration of something not registered.
	ErrNotRegistered = errors.New("notifier: not registered")
	// ErrPayloadTooLarge reports arguments whose encoding exceeds the NATS
	// server's max payload. Nothing was sent.
	ErrPayloadTooLarge = errors.New("notifier: payload too large")
	// ErrEncode reports arguments or a result that cannot be encoded.
	ErrEncode = errors.New("notifier: cannot encode")
	// ErrDecode reports a payload that cannot be decoded.
	ErrDecode = errors.New("notifier: cannot decode")
)

// timeoutError is ErrTimeout: it matches context.DeadlineExceeded too, so
// callers may test for either.
type timeoutError struct{}

func (timeoutError) Error() string   { return "notifier: timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }
func (timeoutError) Is(target error) bool {
	return target == context.DeadlineExceeded
}

// Codes of RemoteError.
const (
	// CodeHandler: the handler returned an error.
	CodeHandler = 1
	// CodePanic: the handler panicked; the panic was recovered.
	CodePanic = 2
	// CodeEncode: the handler's result could not be encoded.
	CodeEncode = 3
	// CodeDecode: the request's arguments could not be decoded (gateway).
	CodeDecode = 4
	// CodeInternal: the responder failed for another reason.
	CodeInternal = 5
)

// RemoteError is a responder's failure, delivered in Result.Err. It is never
// a local transport error: those are returned by RPC itself.
type RemoteError struct {
	Code    int
	Message string
}

func (e *RemoteError) Error() string {
	return fmt.Sprintf("notifier: remote error %d: %s", e.Code, e.Message)
}

// errNoSlice: a re-route found no slice to draw.
var errNoSlice = errors.New("notifier: no slice")

// remoteErrorWire is RemoteError on the wire.
type remoteErrorWire struct {
	_msgpack struct{} `msgpack:",as_array"`
	Code     int
	Message  string
}

func decodeRemoteError(b []byte) *RemoteError {
	var w remoteErrorWire
	if err := wire.Unmarshal(b, &w); err != nil {
		return &RemoteError{Code: CodeInternal, Message: "undecodable remote error"}
	}
	return &RemoteError{Code: w.Code, Message: w.Message}
}

func encodeRemoteError(e *RemoteError) []byte {
	b, _ := msgpack.Marshal(&remoteErrorWire{Code: e.Code, Message: e.Message})
	return b
}
