package notifier

import "context"

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
