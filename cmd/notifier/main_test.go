package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/natsnotifier/notifier/internal/syncbuf"
)

// TestMain keeps the tests from reading the user's nats contexts or NATS_*
// environment: a private, empty configuration directory.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "notifier-cmd-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "NATS_") {
			os.Unsetenv(k)
		}
	}
	os.Setenv("XDG_CONFIG_HOME", dir)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// waitTimeout bounds every wait of these tests.
const waitTimeout = 15 * time.Second

// syncBuffer is a bytes.Buffer safe for concurrent use.
type syncBuffer = syncbuf.Buffer

// proc is a command running in-process.
type proc struct {
	args           []string
	stdout, stderr *syncBuffer
	cancel         context.CancelFunc
	done           chan int // receives the exit code
}

// start runs the command line args in the background, with an empty stdin.
// The test's cleanup cancels it and waits for it to end.
func start(t *testing.T, args ...string) *proc {
	t.Helper()
	return startIn(t, strings.NewReader(""), args...)
}

// startIn is start with stdin.
func startIn(t *testing.T, stdin io.Reader, args ...string) *proc {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	p := &proc{args: args, stdout: &syncBuffer{}, stderr: &syncBuffer{}, cancel: cancel, done: make(chan int, 1)}
	go func() { p.done <- run(ctx, args, stdin, p.stdout, p.stderr) }()
	t.Cleanup(func() {
		cancel()
		select {
		case code := <-p.done:
			p.done <- code // keep it for a later wait
		case <-time.After(waitTimeout):
			t.Errorf("%q did not stop after cancel", args)
		}
	})
	return p
}

// wait waits for the command to end and returns its exit code.
func (p *proc) wait(t *testing.T) int {
	t.Helper()
	select {
	case code := <-p.done:
		p.done <- code
		return code
	case <-time.After(waitTimeout):
		t.Fatalf("%q did not end within %v\nstdout:\n%s\nstderr:\n%s", p.args, waitTimeout, p.stdout, p.stderr)
		return -1
	}
}

// waitFor polls w until it contains s.
func (p *proc) waitFor(t *testing.T, w *syncBuffer, s string) {
	t.Helper()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(waitTimeout)
	for !strings.Contains(w.String(), s) {
		select {
		case code := <-p.done:
			p.done <- code
			if !strings.Contains(w.String(), s) { // the output is complete
				t.Fatalf("%q exited with %d without printing %q\nstdout:\n%s\nstderr:\n%s", p.args, code, s, p.stdout, p.stderr)
			}
		case <-tick.C:
		case <-deadline:
			t.Fatalf("%q did not print %q within %v\nstdout:\n%s\nstderr:\n%s", p.args, s, waitTimeout, p.stdout, p.stderr)
		}
	}
}

// runCmd runs the command line args to completion.
func runCmd(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	p := start(t, args...)
	code = p.wait(t)
	return code, p.stdout.String(), p.stderr.String()
}

// closedURL returns the URL of a loopback port nothing listens on.
func closedURL(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return "nats://" + addr
}

func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"help"}, {"--help"}, {"-h"}, {"help", "help"}} {
		code, stdout, stderr := runCmd(t, args...)
		if code != exitOK || stderr != "" {
			t.Errorf("%q: exit %d, stderr %q", args, code, stderr)
		}
		for _, c := range commands {
			if !strings.Contains(stdout, "\n  "+c.name+" ") {
				t.Errorf("%q does not list %q:\n%s", args, c.name, stdout)
			}
		}
	}
	for _, c := range commands {
		for _, args := range [][]string{{c.name, "--help"}, {c.name, "-h"}, {"help", c.name}} {
			code, stdout, stderr := runCmd(t, args...)
			if code != exitOK || stderr != "" {
				t.Errorf("%q: exit %d, stderr %q", args, code, stderr)
			}
			if !strings.HasPrefix(stdout, "Usage: notifier "+c.name+" ") || !strings.Contains(stdout, "\nFlags:\n") {
				t.Errorf("%q: no usage on stdout:\n%s", args, stdout)
			}
		}
	}
}

func TestBadCommandLine(t *testing.T) {
	addr := []string{"--object", "o", "--cmd", "c", "--id", "1"}
	tests := []struct {
		name string
		args []string
	}{
		{"no command", nil},
		{"unknown command", []string{"bogus"}},
		{"help of unknown command", []string{"help", "bogus"}},
		{"unknown flag", []string{"pub", "--bogus"}},
		{"positional argument", append([]string{"pub", "extra"}, addr...)},
		{"missing id", []string{"pub", "--object", "o", "--cmd", "c"}},
		{"missing object", []string{"rpc", "--cmd", "c", "--id", "1"}},
		{"missing cmd", []string{"sub", "--object", "o"}},
		{"id not a number", []string{"pub", "--object", "o", "--cmd", "c", "--id", "x"}},
		{"object with a dot", []string{"pub", "--object", "o.p", "--cmd", "c", "--id", "1"}},
		{"cmd with a wildcard", []string{"sub", "--object", "o", "--cmd", "*"}},
		{"bad JSON", append([]string{"pub", "--json", "{"}, addr...)},
		{"two JSON values", append([]string{"rpc", "--json", "1 2"}, addr...)},
		{"bad prefix", append([]string{"pub", "--prefix", "a..b"}, addr...)},
		{"zero count", append([]string{"pub", "--count", "0"}, addr...)},
		{"zero timeout", append([]string{"rpc", "--timeout", "0s"}, addr...)},
		{"bad duration", append([]string{"rpc", "--timeout", "soon"}, addr...)},
		{"id and mask", []string{"sub", "--object", "o", "--cmd", "c", "--id", "1", "--mask", "1"}},
		{"weight without slice", []string{"sub", "--object", "o", "--cmd", "c", "--weight", "2"}},
		{"bad weight", []string{"sub", "--object", "o", "--cmd", "c", "--slice", "--weight", "x"}},
		{"serve: url and port", []string{"serve", "--url", "nats://127.0.0.1:4222", "--port", "4333"}},
		{"serve: routes without cluster port", []string{"serve", "--routes", "nats://127.0.0.1:6222"}},
		{"serve: bad port", []string{"serve", "--port", "70000"}},
		{"demo: zero n", []string{"demo", "--n", "0"}},
		{"demo: bad prefix", []string{"demo", "--prefix", "a b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runCmd(t, tt.args...)
			if code != exitUsage {
				t.Errorf("exit %d, want %d\nstderr:\n%s", code, exitUsage, stderr)
			}
			if stdout != "" {
				t.Errorf("stdout %q, want nothing", stdout)
			}
			if !strings.Contains(stderr, "Usage: notifier") {
				t.Errorf("no usage on stderr:\n%s", stderr)
			}
		})
	}
}

func TestUnreachableServer(t *testing.T) {
	url := closedURL(t)
	addr := []string{"--url", url, "--object", "o", "--cmd", "c", "--id", "1"}
	for _, args := range [][]string{
		append([]string{"pub"}, addr...),
		append([]string{"rpc"}, addr...),
		{"sub", "--url", url, "--object", "o", "--cmd", "c"},
		{"serve", "--url", url},
		{"demo", "--url", url},
	} {
		t.Run(args[0], func(t *testing.T) {
			begin := time.Now()
			code, stdout, stderr := runCmd(t, args...)
			if code != exitFail {
				t.Errorf("exit %d, want %d\nstderr:\n%s", code, exitFail, stderr)
			}
			if d := time.Since(begin); d > connectTimeout+time.Second {
				t.Errorf("took %v, want it to fail fast", d)
			}
			if want := "notifier " + args[0] + ": cannot connect to NATS at " + url; !strings.Contains(stderr, want) {
				t.Errorf("stderr does not say %q:\n%s", want, stderr)
			}
			if stdout != "" {
				t.Errorf("stdout %q, want nothing", stdout)
			}
		})
	}
}
