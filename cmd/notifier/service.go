package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/natsnotifier/notifier"
)

// serviceObject is the object the example service of "notifier serve"
// registers.
const serviceObject = "demo"

// endpoint is one registration of the example service.
type endpoint struct {
	kind     string // "pub" or "rpc"
	cmd      string
	doc      string // for the start-up message
	register func() error
}

// logSub logs each notification it receives.
type logSub struct {
	log *slog.Logger
	msg string
}

var _ notifier.Subscriber = (*logSub)(nil)

func (s *logSub) Notify(object string, id int64, cmd string, args notifier.Args) {
	s.log.Info(s.msg, "object", object, "id", id, "cmd", cmd, "args", args.String())
}

// handler is a Responder made of a function; a pointer, so that it is a valid
// (comparable) destination.
type handler struct {
	log *slog.Logger
	fn  func(id int64, args notifier.Args) (any, error)
}

var _ notifier.Responder = (*handler)(nil)

func (h *handler) RPCCall(_ context.Context, object string, id int64, cmd string, args notifier.Args) (any, error) {
	v, err := h.fn(id, args)
	h.log.Info("rpc", "object", object, "id", id, "cmd", cmd, "args", args.String(), "err", err)
	return v, err
}

// registerService registers the example service "demo" on n and returns
// what it registered.
func registerService(n *notifier.Notifier, log *slog.Logger) ([]endpoint, error) {
	all := notifier.Match{}
	host, _ := os.Hostname()
	rpc := func(fn func(int64, notifier.Args) (any, error)) *handler { return &handler{log: log, fn: fn} }
	eps := []endpoint{
		{"pub", "log", "full registration: logs every notification", func() error {
			return n.Subscribe(serviceObject, all, "log", &logSub{log: log, msg: "notification"})
		}},
		{"pub", "work", "slice, weight 1: several serve processes share the work", func() error {
			return n.Slice(serviceObject, all, "work", &logSub{log: log, msg: "work (slice)"}, 1)
		}},
		{"rpc", "echo", "returns its arguments (nil arguments: no answer)", func() error {
			return n.RPCRegister(serviceObject, all, "echo", rpc(func(_ int64, a notifier.Args) (any, error) {
				// A handler returns a value, not the Args it got: decode it.
				var v any
				err := a.Decode(&v)
				return v, err
			}))
		}},
		{"rpc", "add", "returns the sum of an array of numbers, e.g. [2,3]", func() error {
			return n.RPCRegister(serviceObject, all, "add", rpc(func(_ int64, a notifier.Args) (any, error) {
				var xs []float64
				if err := a.Decode(&xs); err != nil {
					return nil, errors.New("add wants an array of numbers, e.g. [2,3]")
				}
				sum := 0.0
				for _, x := range xs {
					sum += x
				}
				return sum, nil
			}))
		}},
		{"rpc", "time", "returns the responder's clock, RFC 3339", func() error {
			return n.RPCRegister(serviceObject, all, "time", rpc(func(int64, notifier.Args) (any, error) {
				return time.Now().UTC().Format(time.RFC3339Nano), nil
			}))
		}},
		{"rpc", "whoami", "RPC slice: one serve process answers, with its node and host", func() error {
			return n.RPCSlice(serviceObject, all, "whoami", rpc(func(int64, notifier.Args) (any, error) {
				return map[string]string{"node": n.Node(), "host": host}, nil
			}), 1)
		}},
		{"rpc", "fail", "always fails: shows an error reply", func() error {
			return n.RPCRegister(serviceObject, all, "fail", rpc(func(id int64, _ notifier.Args) (any, error) {
				return nil, fmt.Errorf("demo.fail always fails (id %d)", id)
			}))
		}},
	}
	for _, ep := range eps {
		if err := ep.register(); err != nil {
			return nil, fmt.Errorf("register %s %s.%s: %w", ep.kind, serviceObject, ep.cmd, err)
		}
	}
	return eps, nil
}
