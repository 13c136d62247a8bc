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
//
// testenv.Run(t) accepts every client. Options secure a stand-alone server
// as production ones are: [WithUsers] (passwords or nkeys, with
// [Permissions]), [WithToken], [WithAccounts], [WithTLS] and [WithMutualTLS]
// with certificates from [GenerateTLS], [WithOperator] (JWT mode, a user
// creds file from [GenerateOperator]), and [WithConfig] for any other
// nats-server configuration. Keys and certificates are generated in the
// test, so nothing that expires is stored.
package testenv
