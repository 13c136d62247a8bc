// Package directory is the Notifier's interest directory: every Notifier (a
// node) keeps a live view of every registration on the bus, its own included,
// so a sender knows which Notifiers to send to. It runs on plain core NATS
// (no JetStream, no system account) over the subjects of package bus.
//
// # Protocol
//
// Every node numbers the versions of its own registration table and announces
// each change as a delta carrying the new version; changes made at once share
// one announcement and one acknowledgement round (group commit). A joining
// node subscribes to announcements first, asks one member for the member list,
// then fetches every member's table: a reply from a member proves the joiner's
// subscriptions reached that member's server, so no later change of that
// member can be missed. It then announces its whole (empty) table, so peers
// need not fetch it.
//
// Failure detection and repair are ring probes (see Directory): idle traffic
// is four messages per node per heartbeat, independent of how many nodes
// there are. A node found gone is dropped by its prober, which announces the
// drop to all; Close says goodbye.
//
// Every message is a msgpack array decoded with internal/wire's bounded
// decoder; one that cannot be decoded, or that claims another node than its
// subject names, is logged, counted (Stats) and ignored.
package directory
