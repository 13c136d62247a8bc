// Command bench measures the Notifier side by side with raw nats.go, in one
// process, on one embedded nats-server (testenv.Start), with the same 64-byte
// payload, and prints a markdown table of ratios next to the targets of
// issue 5.
//
// Usage:
//
//	go run ./bench                      # full run, median of 3 runs per ratio
//	go run ./bench -short               # a few thousand messages, small scale rows
//	go run ./bench -only pub1,rpc       # some rows only
//	go run ./bench -only pub1 -cpuprofile pub.prof
//	go tool pprof -top -tagfocus variant=notifier pub.prof
//
// Rows (keys for -only):
//
//	pub1    publish 1→1: Notifier Publish to one full Subscribe on another
//	        Notifier vs nats.go Publish to one subscriber on another connection;
//	        messages per second at the receiver (first send to last receipt).
//	fanout  fan-out 1→10: ten Notifiers with a full Subscribe each vs ten raw
//	        subscribers; published messages per second until all ten got all.
//	slice   slice 1→one-of-10: ten Notifiers with an equal-weight Slice each vs
//	        a raw queue group of ten.
//	rpc     one caller: Notifier RPC round trip to one RPCRegister echo on
//	        another Notifier vs nc.Request to a raw echo responder, and vs a
//	        nats.go micro endpoint echo; p50 and p99 latency.
//	rpc8    eight goroutines sharing one Notifier (one nats.Conn) calling as
//	        fast as they can; requests per second.
//	allocs  allocations per publish (1→1) and per RPC, attributed to sender,
//	        receiver and server by the allocating stack.
//	scale   N Notifiers × M registrations (default 200 × 50): time for a new
//	        Notifier to join, register M registrations and be routed to by all
//	        the others; heap per registration in the directory.
//	big     one Notifier with 100,000 registrations: heap per registration,
//	        join of a second Notifier, and the cost of a directory lookup.
//
// Every Publish/Send of a round sends all its messages and then waits until
// every expected delivery arrived, or was dropped (Notifier Stats().Dropped,
// nats.go slow-consumer drops), or the deadline passed; drops are reported in
// the row. Ratios are taken per run and the median over -runs runs is shown.
//
// The CPU profile (-cpuprofile) carries a pprof label "variant" (notifier,
// raw, micro) on every client-side goroutine of each variant, so
// -tagfocus variant=notifier isolates the Notifier's client side; the embedded
// server's goroutines carry no label.
package main
