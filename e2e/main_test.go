package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// The tools under test, as named by this module's tool directives.
const (
	natsCLIPkg    = "github.com/nats-io/natscli/nats"
	natsServerPkg = "github.com/nats-io/nats-server/v2"
)

// buildTimeout bounds building both tools; a cold build of natscli from the
// module proxy takes about 40 s on 2 cores.
const buildTimeout = 5 * time.Minute

// cliTimeout bounds one run of the nats CLI.
const cliTimeout = 30 * time.Second

// workDir is this run's scratch directory: the built tools and the CLI's HOME.
var workDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "notifier-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(2)
	}
	workDir = dir
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// toolPaths are the built binaries.
type toolPaths struct {
	nats       string // natscli
	natsServer string // nats-server
	home       string // HOME of every CLI run
}

// buildTools builds both tools once per test binary run, on first use, so a
// run of only the compose test builds nothing.
var buildTools = sync.OnceValues(func() (toolPaths, error) {
	bin := filepath.Join(workDir, "bin")
	p := toolPaths{
		nats:       filepath.Join(bin, "nats"),
		natsServer: filepath.Join(bin, "nats-server"),
		home:       filepath.Join(workDir, "home"),
	}
	if err := os.MkdirAll(filepath.Join(p.home, ".config"), 0o755); err != nil {
		return p, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	// The test runs in the package directory, inside this module, so the
	// versions are the ones go.mod pins. go test puts its own go first in PATH.
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin+string(filepath.Separator), natsCLIPkg, natsServerPkg)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = 10 * time.Second // the compilers go build started may outlive it
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return p, fmt.Errorf("go build %s %s: %w\n%s", natsCLIPkg, natsServerPkg, err, out.String())
	}
	for _, f := range []string{p.nats, p.natsServer} {
		if _, err := os.Stat(f); err != nil {
			return p, fmt.Errorf("go build did not produce %s: %w", f, err)
		}
	}
	fmt.Fprintf(os.Stderr, "e2e: built nats and nats-server in %v\n", time.Since(start).Round(time.Millisecond))
	return p, nil
})

// tools returns the built tools, failing t if they cannot be built.
func tools(t testing.TB) toolPaths {
	t.Helper()
	p, err := buildTools()
	if err != nil {
		t.Fatalf("e2e: building the tools: %v", err)
	}
	return p
}

// cliEnv is the environment of a CLI run: the test's, without any NATS_*
// setting that could point the CLI elsewhere, and with a private HOME so no
// user context is read or written.
func cliEnv(home string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "NATS_") || k == "HOME" || k == "XDG_CONFIG_HOME" {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "HOME="+home, "XDG_CONFIG_HOME="+filepath.Join(home, ".config"))
}

// cliCommand prepares `nats --server <url> --no-context <args...>`.
func cliCommand(ctx context.Context, t testing.TB, url string, args ...string) *exec.Cmd {
	t.Helper()
	p := tools(t)
	all := append([]string{"--server", url, "--no-context"}, args...)
	cmd := exec.CommandContext(ctx, p.nats, all...)
	cmd.Env = cliEnv(p.home)
	cmd.Dir = p.home
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// nats runs the CLI to completion and returns its stdout. It fails t if the
// CLI exits with an error or runs longer than cliTimeout.
func natsCLI(t testing.TB, url string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	cmd := cliCommand(ctx, t, url, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) || errors.Is(ctx.Err(), context.DeadlineExceeded) {
			t.Fatalf("nats %s: %v (ctx: %v)\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, ctx.Err(), stdout.String(), stderr.String())
		}
		t.Fatalf("nats %s: %v", strings.Join(args, " "), err)
	}
	return stdout.String()
}
