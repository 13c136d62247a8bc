package notifier

// MaxRPCsInFlight exposes the bound of RPCs to the external tests.
const MaxRPCsInFlight = maxRPCsInFlight
