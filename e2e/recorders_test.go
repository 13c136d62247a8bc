package e2e

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"

	"github.com/natsnotifier/notifier"
)

// payload is the JSON the tests send with the CLI.
type payload struct {
	N    int      `json:"n"`
	Name string   `json:"name"`
	Tags []string `json:"tags"`
}

// recorder is a Subscriber that decodes every notification into a payload
// and records it.
type recorder struct {
	mu      sync.Mutex
	got     []payload
	addrs   []string // object.cmd.id of each notification
	decErrs []error
	maps    []map[string]any // the same args decoded into a map
}

var _ notifier.Subscriber = (*recorder)(nil)

func (r *recorder) Notify(object string, id int64, cmd string, args notifier.Args) {
	var p payload
	err := args.Decode(&p)
	var m map[string]any
	if err == nil {
		err = args.Decode(&m)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.decErrs = append(r.decErrs, err)
		return
	}
	r.got = append(r.got, p)
	r.maps = append(r.maps, m)
	r.addrs = append(r.addrs, addr(object, cmd, id))
}

// count is how many notifications decoded.
func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.got)
}

// counts returns how often each payload.N arrived.
func (r *recorder) counts() map[int]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := make(map[int]int, len(r.got))
	for _, p := range r.got {
		c[p.N]++
	}
	return c
}

func (r *recorder) snapshot() (got []payload, maps []map[string]any, addrs []string, decErrs []error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]payload(nil), r.got...), append([]map[string]any(nil), r.maps...),
		append([]string(nil), r.addrs...), append([]error(nil), r.decErrs...)
}

// errHandler is what a failing responder returns.
var errHandler = errors.New("e2e: handler failed on purpose")

// responder is a Responder that echoes the "n" of its JSON args with its own
// name, or fails with errHandler.
type responder struct {
	name  string
	fail  bool
	calls atomic.Int64
}

var _ notifier.Responder = (*responder)(nil)

// answer is a responder's result as the CLI sees it.
type answer struct {
	Who string `json:"who"`
	N   int    `json:"n"`
	ID  int64  `json:"id"`
}

func (r *responder) RPCCall(ctx context.Context, object string, id int64, cmd string, args notifier.Args) (any, error) {
	r.calls.Add(1)
	var in payload
	if err := args.Decode(&in); err != nil {
		return nil, err
	}
	if r.fail {
		return nil, errHandler
	}
	return map[string]any{"who": r.name, "n": in.N, "id": id}, nil
}
