package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natsnotifier/notifier"
	"github.com/natsnotifier/notifier/testenv"
)

// notifierPkg is this repository's CLI.
const notifierPkg = "github.com/natsnotifier/notifier/cmd/notifier"

// buildNotifier builds the notifier command once, on first use.
var buildNotifier = sync.OnceValues(func() (string, error) {
	bin := filepath.Join(workDir, "bin", "notifier")
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, notifierPkg)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build %s: %w\n%s", notifierPkg, err, out.String())
	}
	return bin, nil
})

// runNotifier runs the built notifier command with env and stdin, and
// returns its exit code and output.
func runNotifier(t *testing.T, env []string, stdin []byte, args ...string) (code int, stdout, stderr string, err error) {
	t.Helper()
	bin, err := buildNotifier()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = env
	cmd.Stdin = bytes.NewReader(stdin)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	cmd.WaitDelay = 5 * time.Second
	err = cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, o.String(), e.String(), nil
	case errors.As(err, &ee):
		return ee.ExitCode(), o.String(), e.String(), nil
	}
	return -1, o.String(), e.String(), err
}

// natsIn runs the real nats CLI with env (its HOME holds its contexts).
func natsIn(t *testing.T, env []string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, tools(t).nats, args...)
	cmd.Env = env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		t.Fatalf("nats %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	return out.String()
}

// echoArgs answers with its arguments.
type echoArgs struct{}

func (echoArgs) RPCCall(_ context.Context, _ string, _ int64, _ string, args notifier.Args) (any, error) {
	var v any
	err := args.Decode(&v)
	return v, err
}

// TestNotifierCLIReadsNatsContext: a context saved and selected with the
// real nats CLI (user, password, private CA) is what the notifier command
// connects with; a flag beats it, and NATS_URL loses to it.
func TestNotifierCLIReadsNatsContext(t *testing.T) {
	tools(t)
	certs, err := testenv.GenerateTLS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	srv := testenv.Run(t, testenv.WithTLS(certs), testenv.WithUsers(testenv.User{Name: "alice", Password: "ctx-secret-9"}))
	n, _ := connectWith(t, srv.URL(), notifier.DefaultPrefix, 1, nats.RootCAs(certs.CAFile), nats.UserInfo("alice", "ctx-secret-9"))
	must(t, n.RPCRegister("ctx", notifier.Match{}, "echo", echoArgs{}))

	home := t.TempDir()
	env := append(cliEnv(home), "NATS_URL=nats://127.0.0.1:1") // the environment: beaten by the context
	natsIn(t, env, "context", "save", "dev", "--server", srv.URL(), "--user", "alice", "--password", "ctx-secret-9", "--tlsca", certs.CAFile)
	natsIn(t, env, "context", "select", "dev")

	rpc := []string{"rpc", "--object", "ctx", "--cmd", "echo", "--id", "1", "--json", `"via context"`}
	code, stdout, stderr, err := runNotifier(t, env, nil, rpc...)
	if err != nil || code != 0 || stdout != `{"value":"via context"}`+"\n" {
		t.Fatalf("notifier rpc with the selected context: exit %d, %v\nstdout:\n%s\nstderr:\n%s", code, err, stdout, stderr)
	}
	code, stdout, stderr, _ = runNotifier(t, env, nil, append(rpc, "--user", "alice", "--password", "flag-wrong-8")...)
	if code != 1 || strings.Contains(stdout+stderr, "flag-wrong-8") || strings.Contains(stdout+stderr, "ctx-secret-9") {
		t.Errorf("a wrong --password over the context: exit %d, want 1 and no secret\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	code, _, stderr, _ = runNotifier(t, env, nil, append(rpc, "--no-context")...)
	if code != 1 || !strings.Contains(stderr, "cannot connect to NATS at nats://127.0.0.1:1") {
		t.Errorf("--no-context: exit %d, want 1 at $NATS_URL\nstderr:\n%s", code, stderr)
	}
}

// TestNotifierCLIBigArguments: arguments of 300 KiB cannot be a command-line
// argument (Linux limits one to 128 KiB: "argument list too long"), and go
// through --json-file and stdin instead.
func TestNotifierCLIBigArguments(t *testing.T) {
	url := startStandalone(t)
	n, _ := connectWith(t, url, notifier.DefaultPrefix, 1)
	must(t, n.RPCRegister("big", notifier.Match{}, "echo", echoArgs{}))
	rec := &sizeRecorder{}
	must(t, n.Subscribe("big", notifier.Match{}, "log", rec))

	big := `"` + strings.Repeat("z", 300<<10) + `"`
	env := cliEnv(t.TempDir())
	_, _, _, err := runNotifier(t, env, nil, "pub", "--url", url, "--object", "big", "--cmd", "log", "--id", "1", "--json", big)
	if runtime.GOOS == "linux" && !errors.Is(err, syscall.E2BIG) {
		t.Errorf("--json with 300 KiB: %v, want the exec to fail with E2BIG (argument list too long)", err)
	}
	file := filepath.Join(t.TempDir(), "big.json")
	if err := os.WriteFile(file, []byte(big), 0o600); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr, err := runNotifier(t, env, nil, "pub", "--url", url, "--object", "big", "--cmd", "log", "--id", "1", "--json-file", file)
	if err != nil || code != 0 {
		t.Fatalf("pub --json-file: exit %d, %v\nstdout:\n%s\nstderr:\n%s", code, err, stdout, stderr)
	}
	eventually(t, readyTimeout, func() bool { return rec.last() == 300<<10 },
		func() string { return fmt.Sprintf("the subscriber got %d bytes", rec.last()) })
	code, stdout, stderr, err = runNotifier(t, env, []byte(big), "rpc", "--url", url, "--object", "big", "--cmd", "echo", "--id", "1", "--json", "-")
	if err != nil || code != 0 || stdout != `{"value":`+big+"}\n" {
		t.Fatalf("rpc --json - (stdin): exit %d, %v, %d bytes out\nstderr:\n%s", code, err, len(stdout), stderr)
	}
}

// sizeRecorder records the length of the last string notification.
type sizeRecorder struct {
	mu sync.Mutex
	n  int
}

func (r *sizeRecorder) Notify(_ string, _ int64, _ string, args notifier.Args) {
	var s string
	if err := args.Decode(&s); err != nil {
		return
	}
	r.mu.Lock()
	r.n = len(s)
	r.mu.Unlock()
}

func (r *sizeRecorder) last() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}
