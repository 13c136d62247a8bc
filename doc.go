// Package notifier is the Notifier of Python's notifier.coroutines on NATS:
// one-way notifications and RPC addressed by (object, id, cmd), where
// receivers register id patterns (mask, value) and "slice" registrations
// share traffic by weight.
//
// # Semantics
//
// A publish reaches every matching full registration (Subscribe) on every
// Notifier of the bus once, and exactly one of all matching slice
// registrations (Slice) bus-wide, drawn with probability proportional to its
// weight; weight 0 is standby, drawn only when every matching slice has weight
// 0. An RPC does the same with RPCRegister and RPCSlice registrations and
// returns one Result per responder. Notification and RPC registrations are
// separate. An id matches Match{Mask, Value} when id&Mask == Value.
//
// # How it works on NATS
//
// NATS subjects cannot express id&mask == value, and queue groups have no
// weights and cannot hand a message back, so every Notifier keeps a live
// directory of every registration on the bus (internal/directory) and routes each
// message itself: the sender matches the directory, draws the slice, and
// sends one message to each chosen Notifier on
// <prefix>.node.<node>.pub.<object>.<cmd>.<id>. Full registrations for every
// id (Match{}) are reached instead by one message on the shared subject
// <prefix>.fan.<object>.<cmd>.<id>, which the NATS server fans out to every
// Notifier holding one. The receiver checks its own registrations again and
// calls the destinations. Messages from the nats CLI
// or other languages enter through the gateway subjects
// <prefix>.pub.<object>.<cmd>.<id> and <prefix>.rpc.<object>.<cmd>.<id>.
//
// # Decisions where the original is silent
//
//   - Registration identity is (object, id pattern, cmd, destination), per
//     kind. Registering the same identity again is a no-op; Subscribe after
//     Slice (or Slice with another weight) replaces the mode and weight.
//     Unsubscribe removes it whichever mode it has.
//   - Registration calls return once every Notifier known at that moment has
//     applied the change (or has left the bus), bounded by WithRegisterTimeout;
//     on timeout they return an error matching ErrTimeout and the registration
//     stays in effect: it reaches the late peers with their next table fetch.
//   - Connect and New return once the new Notifier knows every registration
//     on the bus. On an empty bus that costs one request answered by NATS with
//     "no responders" (tens of microseconds); otherwise one round trip to one
//     member plus one table fetch per member, in parallel.
//   - A Notifier that closes says goodbye: the others stop routing to it at
//     once. One that dies without goodbye is dropped by the others after three
//     missed heartbeats: within 4 s by default (WithHeartbeat sets the period).
//     Until then a slice drawn on it is lost for publishes; RPCs to it end at
//     the deadline, or at once where NATS answers "no responders", and an RPC
//     slice is then drawn again among the remaining slices.
//   - Each registration has a bounded queue (WithQueueSize, and 64 MiB of
//     payload). Notify calls for one registration run one at a time in
//     arrival order; different registrations run concurrently. When a queue
//     is full the notification is dropped, counted in Stats().Dropped and
//     logged (at most once a second). A full registration for every id
//     (Match{}) has its own subscription to the fan-out subject, whose pending
//     messages nats.go bounds the same way: its drops are counted in
//     Stats().Dropped and reported as nats.ErrSlowConsumer to the
//     connection's error handler (Connect's logs them).
//   - RPC handlers run on their own goroutines, at most WithConcurrency at
//     once per Notifier; handler ctx carries the caller's deadline.
//   - RPC returns ErrNoResponders when no registration on the bus matched, and
//     also when every Notifier it reached had meanwhile dropped the
//     registration. A handler returning (nil, nil) counts as having answered.
//   - RemoteError codes: CodeHandler (the handler returned an error; a
//     *RemoteError returned by a handler keeps its own code), CodePanic,
//     CodeEncode (the result could not be encoded or is too large), CodeDecode
//     (the gateway could not decode the request), CodeInternal.
//   - Payloads are msgpack. Args.Decode decodes into any Go value; an empty
//     payload decodes as nil. Messages from other NATS clients on the gateway
//     subjects are JSON unless they carry Content-Type: application/msgpack.
//   - After a server restart or failover, nats.go restores the subscriptions
//     and the Notifier re-announces itself and re-learns the bus. Connect
//     reconnects forever; with New the caller's connection should too.
//   - Ids are int64; the original's string ids are not supported.
package notifier
