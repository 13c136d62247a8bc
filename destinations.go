package notifier

import (
	"context"
	"fmt"
	"reflect"
)

// Subscriber receives notifications. Notify calls for one registration run
// one at a time, in publish order per publisher; calls for different
// registrations run concurrently. Notify should return promptly: while it
// blocks, notifications for that registration queue up to the queue size
// (WithQueueSize) and then are dropped. A panic is recovered and logged.
// No call starts after Unsubscribe of the registration or Close returned.
type Subscriber interface {
	Notify(object string, id int64, cmd string, args Args)
}

// Responder answers RPCs. RPCCall runs concurrently with other calls, up to
// the Notifier's concurrency bound (WithConcurrency); ctx ends when the
// caller's deadline passes. Returning (nil, nil) means "nothing to say": the
// caller gets no Result from this responder. An error, or a recovered panic,
// reaches the caller as a *RemoteError in Result.Err.
type Responder interface {
	RPCCall(ctx context.Context, object string, id int64, cmd string, args Args) (any, error)
}

// ResultHandler receives the outcome of RPCCall, exactly once, on a goroutine
// of its own.
type ResultHandler interface {
	RPCResponse(object string, id int64, cmd string, results []Result, err error)
}

// SubscriberFunc adapts an ordinary function to a Subscriber, as
// http.HandlerFunc adapts one to an http.Handler.
//
// Destinations are identified by identity and must be comparable, which a
// function value is not, so the method is on the pointer: register
// NewSubscriberFunc(f), or &v for a variable v of type SubscriberFunc, and
// pass the same pointer to Unsubscribe and UnsubscribeAll. Two pointers are
// two destinations, even to the same function. A pointer to a nil function
// is rejected with ErrInvalidDestination.
//
// The function is called as Subscriber.Notify is: one call at a time per
// registration, in publish order per publisher.
type SubscriberFunc func(object string, id int64, cmd string, args Args)

// NewSubscriberFunc returns f as a Subscriber destination.
func NewSubscriberFunc(f func(object string, id int64, cmd string, args Args)) *SubscriberFunc {
	sf := SubscriberFunc(f)
	return &sf
}

// Notify calls f(object, id, cmd, args).
func (f *SubscriberFunc) Notify(object string, id int64, cmd string, args Args) {
	(*f)(object, id, cmd, args)
}

// ResponderFunc adapts an ordinary function to a Responder. As with
// SubscriberFunc, the pointer is the destination: register
// NewResponderFunc(f) and pass the same pointer to RPCUnregister.
//
// The function is called as Responder.RPCCall is: concurrently, up to
// WithConcurrency calls at once; (nil, nil) means nothing to say.
type ResponderFunc func(ctx context.Context, object string, id int64, cmd string, args Args) (any, error)

// NewResponderFunc returns f as a Responder destination.
func NewResponderFunc(f func(ctx context.Context, object string, id int64, cmd string, args Args) (any, error)) *ResponderFunc {
	rf := ResponderFunc(f)
	return &rf
}

// RPCCall returns f(ctx, object, id, cmd, args).
func (f *ResponderFunc) RPCCall(ctx context.Context, object string, id int64, cmd string, args Args) (any, error) {
	return (*f)(ctx, object, id, cmd, args)
}

// ResultHandlerFunc adapts an ordinary function to the ResultHandler of
// RPCCall. The pointer is the destination, as with SubscriberFunc.
type ResultHandlerFunc func(object string, id int64, cmd string, results []Result, err error)

// NewResultHandlerFunc returns f as a ResultHandler.
func NewResultHandlerFunc(f func(object string, id int64, cmd string, results []Result, err error)) *ResultHandlerFunc {
	hf := ResultHandlerFunc(f)
	return &hf
}

// RPCResponse calls f(object, id, cmd, results, err).
func (f *ResultHandlerFunc) RPCResponse(object string, id int64, cmd string, results []Result, err error) {
	(*f)(object, id, cmd, results, err)
}

var (
	_ Subscriber    = (*SubscriberFunc)(nil)
	_ Responder     = (*ResponderFunc)(nil)
	_ ResultHandler = (*ResultHandlerFunc)(nil)
)

// nilFunc reports whether dest is a function adapter pointing to a nil
// function: calling it would panic on every message, so checkDest rejects it.
func nilFunc(dest any) bool {
	switch f := dest.(type) {
	case *SubscriberFunc:
		return f != nil && *f == nil
	case *ResponderFunc:
		return f != nil && *f == nil
	case *ResultHandlerFunc:
		return f != nil && *f == nil
	}
	return false
}

// checkDest validates a destination: non-nil and comparable.
func checkDest(dest any) error {
	if dest == nil {
		return fmt.Errorf("%w: nil", ErrInvalidDestination)
	}
	v := reflect.ValueOf(dest)
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface, reflect.Map, reflect.Slice, reflect.Func, reflect.Chan:
		if v.IsNil() {
			return fmt.Errorf("%w: nil %T", ErrInvalidDestination, dest)
		}
	}
	if !v.Type().Comparable() || !v.Comparable() {
		return fmt.Errorf("%w: %T is not comparable", ErrInvalidDestination, dest)
	}
	if nilFunc(dest) {
		return fmt.Errorf("%w: %T to a nil function", ErrInvalidDestination, dest)
	}
	return nil
}
