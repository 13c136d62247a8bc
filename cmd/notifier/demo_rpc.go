package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync/atomic"
	"time"

	"github.com/natsnotifier/notifier"
)

// demoRPCCmd is the cmd of the RPC part; demoRPCCalls the number of calls
// that show the slice split.
const (
	demoRPCCmd   = "status"
	demoRPCCalls = 100
)

// demoResponder answers "<name>: sensor <id> ok"; with failNegative it fails
// for negative ids.
type demoResponder struct {
	on, name     string
	slice        bool
	weight       float64
	failNegative bool
	served       atomic.Int64
}

var _ notifier.Responder = (*demoResponder)(nil)

func (r *demoResponder) RPCCall(_ context.Context, _ string, id int64, _ string, _ notifier.Args) (any, error) {
	r.served.Add(1)
	if r.failNegative && id < 0 {
		return nil, fmt.Errorf("%s: no sensor %d", r.name, id)
	}
	return fmt.Sprintf("%s: sensor %d ok", r.name, id), nil
}

// responseWaiter is a ResultHandler that hands the response to a channel.
type responseWaiter struct{ ch chan rpcResponse }

type rpcResponse struct {
	results []notifier.Result
	err     error
}

var _ notifier.ResultHandler = (*responseWaiter)(nil)

func (w *responseWaiter) RPCResponse(_ string, _ int64, _ string, results []notifier.Result, err error) {
	w.ch <- rpcResponse{results, err} // buffered for the one call
}

// rpcs shows RPC, RPCs, a failing responder, no responders and RPCCall.
func (d *demo) rpcs() error {
	resp := []*demoResponder{
		{on: "A", name: "A full"},
		{on: "B", name: "B full", failNegative: true},
		{on: "A", name: "A slice", slice: true, weight: 1},
		{on: "B", name: "B slice", slice: true, weight: 3},
	}
	d.printf("\n4. RPC registrations for object %q, cmd %q\n", demoObject, demoRPCCmd)
	for _, r := range resp {
		n := d.a
		if r.on == "B" {
			n = d.b
		}
		var err error
		call := fmt.Sprintf("%s.RPCRegister(..., Match{}, ...)", r.on)
		if r.slice {
			err = n.RPCSlice(demoObject, notifier.Match{}, demoRPCCmd, r, r.weight)
			call = fmt.Sprintf("%s.RPCSlice(..., Match{}, ..., %g)", r.on, r.weight)
		} else {
			err = n.RPCRegister(demoObject, notifier.Match{}, demoRPCCmd, r)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", r.name, err)
		}
		if r.failNegative {
			call += "  fails for negative ids"
		}
		d.printf("   %-22s %s\n", r.name, call)
	}
	ctx, cancel := context.WithTimeout(d.ctx, demoWait)
	defer cancel()

	d.printf("\n5. A.RPC(ctx, %q, 5, %q, nil): every full registration and one slice answer\n", demoObject, demoRPCCmd)
	results, err := d.a.RPC(ctx, demoObject, 5, demoRPCCmd, nil)
	if err != nil {
		return fmt.Errorf("RPC: %w", err)
	}
	d.printResults(results)
	d.printf("   %d results (2 full + 1 slice): %s\n", len(results), d.check(len(results) == 3))

	d.printf("\n6. A.RPCs(ctx, %q, ids 1..%d, %q, nil): %d calls at once\n", demoObject, demoRPCCalls, demoRPCCmd, demoRPCCalls)
	before := make([]int64, len(resp))
	for i, r := range resp {
		before[i] = r.served.Load()
	}
	ids := make([]int64, demoRPCCalls)
	for i := range ids {
		ids[i] = int64(i + 1)
	}
	all, err := d.a.RPCs(ctx, demoObject, ids, demoRPCCmd, nil)
	if err != nil {
		return fmt.Errorf("RPCs: %w", err)
	}
	three := 0
	for _, rs := range all {
		if len(rs) == 3 {
			three++
		}
	}
	d.printf("   calls with 3 results: %d of %d: %s\n", three, len(all), d.check(three == len(all)))
	var sliceCalls int64
	for i, r := range resp {
		if r.slice {
			sliceCalls += r.served.Load() - before[i]
		}
	}
	for i, r := range resp {
		if !r.slice {
			continue
		}
		got := r.served.Load() - before[i]
		p := r.weight / 4 // the slice weights sum to 4
		mean := demoRPCCalls * p
		tol := 6 * math.Sqrt(demoRPCCalls*p*(1-p))
		d.printf("   %-22s answered %3d calls (%.0f%%, weight share %.0f%%): %s\n", r.name, got,
			100*float64(got)/demoRPCCalls, 100*p, d.check(math.Abs(float64(got)-mean) <= tol+0.5))
	}
	d.printf("   one slice per call: %d slice answers: %s\n", sliceCalls, d.check(sliceCalls == demoRPCCalls))

	d.printf("\n7. A.RPC(ctx, %q, -1, %q, nil): one responder fails, the others still answer\n", demoObject, demoRPCCmd)
	results, err = d.a.RPC(ctx, demoObject, -1, demoRPCCmd, nil)
	if err != nil {
		return fmt.Errorf("RPC: %w", err)
	}
	d.printResults(results)
	failed := 0
	for _, r := range results {
		var re *notifier.RemoteError
		if errors.As(r.Err, &re) && re.Code == notifier.CodeHandler {
			failed++
		}
	}
	d.printf("   err nil; B full's Result.Err is a *notifier.RemoteError (code %d): %s\n", notifier.CodeHandler,
		d.check(len(results) == 3 && failed == 1))

	d.printf("\n8. A.RPC(ctx, %q, 1, \"reboot\", nil): nothing registered\n", demoObject)
	start := time.Now()
	_, err = d.a.RPC(ctx, demoObject, 1, "reboot", nil)
	d.printf("   err %q, at once, without waiting for a timeout: %s\n", errString(err),
		d.check(errors.Is(err, notifier.ErrNoResponders) && time.Since(start) < time.Second))

	d.printf("\n9. A.RPCCall(%q, 7, %q, nil, handler): returns at once, handler.RPCResponse gets the answers\n", demoObject, demoRPCCmd)
	w := &responseWaiter{ch: make(chan rpcResponse, 1)}
	if err := d.a.RPCCall(demoObject, 7, demoRPCCmd, nil, w); err != nil {
		return fmt.Errorf("RPCCall: %w", err)
	}
	select {
	case r := <-w.ch:
		d.printResults(r.results)
		d.printf("   %d results, err %s: %s\n", len(r.results), errString(r.err), d.check(len(r.results) == 3 && r.err == nil))
	case <-ctx.Done():
		return fmt.Errorf("RPCCall: no response: %w", ctx.Err())
	}
	return nil
}

// printResults prints results as JSON lines, sorted: they arrive in any order.
func (d *demo) printResults(results []notifier.Result) {
	for _, line := range sortedLines(results) {
		d.printf("     %s\n", line)
	}
}

// errString renders an error, or "nil".
func errString(err error) string {
	if err == nil {
		return "nil"
	}
	return err.Error()
}
