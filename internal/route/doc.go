// Package route is the routing planner of the Notifier: given the
// registrations the directory holds for one (object, cmd, id), the random
// source and this node's id, it decides which Notifiers (nodes) a publish or
// an RPC goes to, what each of them delivers, and where the one weighted
// slice lands. It is the single statement of the package doc's delivery rules on the
// sending side.
//
// It imports no NATS and no clock and starts no goroutines: the caller looks
// the registrations up (internal/directory, whose RegRef is [Ref]), turns
// every [Hop] into a message on its own subject, and sends it. The library's
// Publish (send.go) and RPC (rpc_client.go) both route through it; neither holds
// a routing loop of its own. The planner is tested on its own with table
// rows, a fuzz test against a brute-force model and a statistical test of the
// draw.
//
// # Rules
//
//   - Every node holding a matching full registration gets one hop with Full
//     set: it delivers to all its own matching full registrations (the
//     receiver checks its table again).
//   - When some slice matches, exactly one is drawn with [match.Pick]
//     (probability proportional to weight; weight 0 is standby, drawn only
//     when every candidate has weight 0, then uniformly). The random source
//     is called exactly once per plan with at least one slice, and never
//     otherwise, so a seeded source gives the same draws as before the
//     planner existed.
//   - The drawn slice rides on the hop of its node when that node already
//     gets one (Full and Slice both set); otherwise it gets a hop of its own
//     (Slice only). So a node appears at most once per plan.
//   - For a publish, full registrations that match every id (the zero
//     pattern, [Broadcast]) are not node hops: Publish reports fan = true and
//     the caller sends one message on the shared fan-out subject instead. A
//     node holding both kinds still gets a hop for its other full
//     registrations. RPCs have no fan-out: every full registration is a hop.
//   - Hops keep the order in which their nodes first appear among the full
//     registrations, then the slice-only hop. Hop.Local marks this node's own
//     hop, which a publish delivers without NATS.
//   - An RPC whose drawn slice turns out gone (its node answered "no
//     responders", or the node says the registration left) draws again among
//     the remaining candidates ([Candidates]); a gone node or registration
//     stays excluded from every later draw of that call.
package route
