package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natsnotifier/notifier"
	"github.com/natsnotifier/notifier/internal/syncbuf"
	"github.com/natsnotifier/notifier/testenv"
)

// readyTimeout bounds waiting for a server to accept connections and for any
// condition polled by eventually.
const readyTimeout = 15 * time.Second

// pollInterval is how often eventually checks its condition again.
const pollInterval = 5 * time.Millisecond

// serverFactory starts a NATS server on 127.0.0.1 for one test and returns
// its client URL; the server stops when t ends.
type serverFactory struct {
	name  string
	start func(t *testing.T) string
}

// serverFactories are the servers every CLI test runs against.
var serverFactories = []serverFactory{
	{"embedded", func(t *testing.T) string { return testenv.Run(t).URL() }},
	{"standalone", startStandalone},
}

// forEachServer runs test once per server factory, each time with a fresh
// server.
func forEachServer(t *testing.T, test func(t *testing.T, url string)) {
	t.Helper()
	tools(t) // build first, so no server or Notifier idles through the build
	for _, f := range serverFactories {
		t.Run(f.name, func(t *testing.T) {
			test(t, f.start(t))
		})
	}
}

// lockedBuffer is a bytes.Buffer safe to write from a process's copier while
// the test reads it.
type lockedBuffer = syncbuf.Buffer

// startStandalone starts the built nats-server as a separate process on a
// random port of 127.0.0.1 (-p -1, the port read back from the ports file,
// so there is no window in which another process can take a port chosen in
// advance), waits until it accepts NATS connections, and stops it when t
// ends.
func startStandalone(t *testing.T) string {
	t.Helper()
	p := tools(t)
	dir := t.TempDir()
	var logs lockedBuffer
	cmd := exec.Command(p.natsServer, "-a", "127.0.0.1", "-p", "-1", "-n", "e2e-standalone", "--ports_file_dir", dir)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	cmd.Dir = dir
	if err := cmd.Start(); err != nil {
		t.Fatalf("start nats-server: %v", err)
	}
	var waitErr error
	exited := make(chan struct{}) // closed once waitErr is set
	go func() { waitErr = cmd.Wait(); close(exited) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("nats-server output:\n%s", logs.String())
		}
	})

	url, err := waitStandalone(dir, exited, &waitErr)
	if err != nil {
		stop()
		t.Fatalf("nats-server: %v\noutput:\n%s", err, logs.String())
	}
	return url
}

// waitStandalone waits for the ports file in dir, then for the client port
// to accept a NATS connection, or for the process to exit (exited closed,
// *waitErr set).
func waitStandalone(dir string, exited <-chan struct{}, waitErr *error) (string, error) {
	deadline := time.Now().Add(readyTimeout)
	var lastErr error
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return "", fmt.Errorf("exited before accepting connections: %v", *waitErr)
		case <-time.After(pollInterval):
		}
		url, err := readPortsFile(dir)
		if err != nil {
			lastErr = err
			continue
		}
		nc, err := nats.Connect(url, nats.Timeout(time.Second))
		if err != nil {
			lastErr = err
			continue
		}
		nc.Close()
		return url, nil
	}
	return "", fmt.Errorf("not accepting connections after %v: %v", readyTimeout, lastErr)
}

// readPortsFile reads the client URL from the nats-server ports file in dir.
func readPortsFile(dir string) (string, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.ports"))
	if err != nil || len(files) != 1 {
		return "", fmt.Errorf("ports file: %d files, %v", len(files), err)
	}
	data, err := os.ReadFile(files[0])
	if err != nil {
		return "", err
	}
	var ports struct {
		Nats []string `json:"nats"`
	}
	if err := json.Unmarshal(data, &ports); err != nil {
		return "", err // written but not complete yet
	}
	if len(ports.Nats) != 1 {
		return "", fmt.Errorf("ports file lists client URLs %v", ports.Nats)
	}
	return ports.Nats[0], nil
}

// eventually polls cond every pollInterval until it holds, failing t with
// what describe says (called then, so it shows the final state) if it does not
// within timeout.
func eventually(t testing.TB, timeout time.Duration, cond func() bool, describe func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(pollInterval) // polling with a deadline, not synchronising
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", timeout, describe())
		}
		<-tick.C
	}
}

// connect connects a Notifier to url with a fixed random seed and closes it
// when t ends.
func connect(t testing.TB, url string, seed uint64) *notifier.Notifier {
	t.Helper()
	n, err := notifier.Connect(url, notifier.WithRandSource(rand.NewPCG(seed, 2)))
	if err != nil {
		t.Fatalf("notifier.Connect(%s): %v", url, err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil && !errors.Is(err, notifier.ErrClosed) {
			t.Errorf("Close: %v", err)
		}
	})
	return n
}
