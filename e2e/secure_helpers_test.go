package e2e

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natsnotifier/notifier"
	"github.com/natsnotifier/notifier/internal/syncbuf"
)

// logBuffer collects a Notifier's log.
type logBuffer = syncbuf.Buffer

// connectWith connects a Notifier to url with a fixed seed, the prefix and
// the nats options, logging into the returned buffer; it is closed when t
// ends unless the test closed it.
func connectWith(t testing.TB, url, prefix string, seed uint64, natsOpts ...nats.Option) (*notifier.Notifier, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	n, err := notifier.Connect(url,
		notifier.WithPrefix(prefix),
		notifier.WithRandSource(rand.NewPCG(seed, 3)),
		notifier.WithLogger(slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))),
		notifier.WithNATSOptions(natsOpts...))
	if err != nil {
		t.Fatalf("notifier.Connect(%s): %v", url, err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil && !errors.Is(err, notifier.ErrClosed) {
			t.Errorf("Close: %v", err)
		}
	})
	return n, logs
}

// noViolation fails t if a Notifier logged a permissions violation.
func noViolation(t testing.TB, name string, logs *logBuffer) {
	t.Helper()
	if s := logs.String(); strings.Contains(strings.ToLower(s), "permission") {
		t.Errorf("%s logged a permissions violation:\n%s", name, s)
	}
}

// echoResponder answers with its name and its JSON args' "n".
type echoResponder struct{ name string }

func (r *echoResponder) RPCCall(_ context.Context, _ string, _ int64, _ string, args notifier.Args) (any, error) {
	var in payload
	if err := args.Decode(&in); err != nil {
		return nil, err
	}
	return map[string]any{"who": r.name, "n": in.N}, nil
}

// whoAnswered returns the sorted names in RPC results.
func whoAnswered(t testing.TB, results []notifier.Result) []string {
	t.Helper()
	var names []string
	for _, r := range results {
		var a map[string]any
		if err := r.Decode(&a); err != nil {
			t.Fatalf("result: %v", err)
		}
		who, _ := a["who"].(string)
		names = append(names, who)
	}
	sortStrings(names)
	return names
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

// rpcCtx is the context of one RPC in these tests.
func rpcCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// readmeBlock returns the fenced block of the README whose first line is
// the comment "# <marker>...".
func readmeBlock(t testing.TB, marker string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(data), "```conf\n# "+marker)
	if !ok {
		t.Fatalf("README.md has no ```conf block starting with # %s", marker)
	}
	block, _, ok := strings.Cut(rest, "\n```")
	if !ok {
		t.Fatalf("README.md: the %s block does not end", marker)
	}
	return "# " + marker + block + "\n"
}
