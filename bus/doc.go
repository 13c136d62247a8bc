// Package bus is the NATS transport of the Notifier: the subject layout, the
// wire frames of routed messages, and the interest directory that lets every
// Notifier on a NATS system know every registration of every other one.
//
// # Subjects
//
// With the default prefix "notifier" (Subjects.Prefix):
//
//	notifier.pub.<object>.<cmd>.<id>            gateway publish from any NATS client (queue group)
//	notifier.rpc.<object>.<cmd>.<id>            gateway RPC from any NATS client (queue group)
//	notifier.node.<node>.pub.<object>.<cmd>.<id> a publish routed to one Notifier
//	notifier.fan.<object>.<cmd>.<id>            a publish to every full registration for all ids (Match{})
//	notifier.node.<node>.rpc.<object>.<cmd>.<id> an RPC routed to one Notifier
//	notifier.node.<node>.dir                    request: stream that Notifier's registration table
//	notifier.node.<node>.ack                    acknowledgements of that Notifier's announcements
//	notifier.dir.ann.<node>                     announcements: heartbeat, changes, goodbye
//	_NOTIFIER.notifier.members                  request (queue group): which Notifiers are on the bus
//
// # Directory protocol
//
// Every Notifier (a node) numbers the versions of its own registration table.
// It announces each change as a delta carrying the new version, and a heartbeat
// carrying the current one. A node that sees a version gap, or hears from a node
// it does not know, fetches that node's whole table directly from it. A joining
// node subscribes to announcements first, asks one member for the member list,
// then fetches every member's table: a reply from a member proves the joiner's
// subscriptions reached that member's server, so no later change of that member
// can be missed. A node silent for the expiry time is dropped; Close says goodbye.
package bus
