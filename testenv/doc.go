// Package testenv runs embedded NATS servers (nats-server) for tests.
//
// It serves this module's own tests and users' integration tests alike: every
// server listens on a random loopback port, logs nothing and, through [Run]
// and [RunCluster], is shut down when the test ends. [Start] and
// [StartCluster] are the same without a testing.TB, for examples and programs.
//
// A [Server] can be stopped and started again on the same ports, so clients
// configured to reconnect find it at the same URL; a cluster member started
// again rejoins its cluster.
package testenv
