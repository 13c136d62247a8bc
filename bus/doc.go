// Package bus is the Notifier's layout on NATS: the subjects it uses and the
// names it accepts. It is what a NATS client that is not a Notifier needs to
// talk to one (the gateway subjects), and what an operator needs to write
// permissions or to watch the traffic with the nats CLI.
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
//	notifier.node.<node>.registrations          request: that Notifier's registrations as JSON (nats micro)
//	notifier.node.<node>.dir                    request: stream that Notifier's registration table
//	notifier.node.<node>.ack                    acknowledgements of that Notifier's announcements
//	notifier.node.<node>.probe                  ring probes of the directory
//	notifier.dir.ann.<node>                     announcements: changes, whole tables, drops, goodbye
//	_NOTIFIER.notifier.members                  request (queue group): which Notifiers are on the bus
//
// Only the gateway subjects have a documented body (JSON or msgpack, see the
// README). The messages on the other subjects are the library's own wire
// format and may change between versions; the directory protocol that uses
// them is described in the library's internal/directory package and in the
// README's "Scale" section.
//
// # API
//
//   - DefaultPrefix, Subjects and its methods: every subject name.
//   - Kind (KindPub, KindRPC): the "pub" and "rpc" subject families.
//   - ValidName, MaxNameLen, ValidPrefix: the names the Notifier accepts.
//   - AppendAddr, ParseAddr: the "<object>.<cmd>.<id>" tail of a subject.
package bus
