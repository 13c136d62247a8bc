package notifier

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natsnotifier/notifier/internal/syncbuf"
	"github.com/natsnotifier/notifier/testenv"
)

// syncBuffer collects log output from several goroutines.
type syncBuffer = syncbuf.Buffer

// assertNoSecret fails t if any secret occurs in text.
func assertNoSecret(t *testing.T, what, text string, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if s != "" && strings.Contains(text, s) {
			t.Errorf("%s contains the secret %q:\n%s", what, s, text)
		}
	}
}

// TestConnectErrorsHaveNoSecret: a wrong password, a wrong token, a bad
// creds file and a wrong nkey seed each make Connect fail with an error
// that names the server without the secret, and nothing logged holds it.
func TestConnectErrorsHaveNoSecret(t *testing.T) {
	dir := t.TempDir()
	key, err := testenv.GenerateNKey(dir, "good")
	if err != nil {
		t.Fatal(err)
	}
	wrongKey, err := testenv.GenerateNKey(dir, "wrong")
	if err != nil {
		t.Fatal(err)
	}
	users := testenv.Run(t, testenv.WithUsers(
		testenv.User{Name: "alice", Password: "right-password"},
		testenv.User{NKey: key.Public},
	))
	token := testenv.Run(t, testenv.WithToken("right-token"))
	op, err := testenv.GenerateOperator(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	jwtSrv := testenv.Run(t, testenv.WithOperator(op))
	// A creds file of another operator: well formed, signed by nobody the
	// server trusts.
	otherOp, err := testenv.GenerateOperator(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	otherCreds, err := os.ReadFile(otherOp.CredsFile)
	if err != nil {
		t.Fatal(err)
	}
	garbage := filepath.Join(dir, "garbage.creds")
	if err := os.WriteFile(garbage, []byte("not-a-creds-file-secret-garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	nkeyOpt, err := nats.NkeyOptionFromSeed(wrongKey.SeedFile)
	if err != nil {
		t.Fatal(err)
	}
	withAuth := func(u, auth string) string { return strings.Replace(u, "nats://", "nats://"+auth+"@", 1) }

	tests := []struct {
		name    string
		url     string
		opts    []nats.Option
		secrets []string
		want    string // in the error text
	}{
		{"wrong password in the URL", withAuth(users.URL(), "alice:wrong-password-1"), nil,
			[]string{"wrong-password-1"}, "alice:xxxxx@127.0.0.1"},
		{"wrong password as an option", users.URL(), []nats.Option{nats.UserInfo("alice", "wrong-password-2")},
			[]string{"wrong-password-2"}, users.URL()},
		{"wrong token in the URL", withAuth(token.URL(), "wrong-token-1"), nil,
			[]string{"wrong-token-1"}, "nats://xxxxx@127.0.0.1"},
		{"wrong token as an option", token.URL(), []nats.Option{nats.Token("wrong-token-2")},
			[]string{"wrong-token-2"}, token.URL()},
		{"creds of another operator", jwtSrv.URL(), []nats.Option{nats.UserCredentials(otherOp.CredsFile)},
			append(credsSecrets(otherCreds), otherOp.UserSeed), jwtSrv.URL()},
		{"garbage creds file", jwtSrv.URL(), []nats.Option{nats.UserCredentials(garbage)},
			[]string{"not-a-creds-file-secret-garbage"}, jwtSrv.URL()},
		{"wrong nkey seed", users.URL(), []nats.Option{nkeyOpt},
			[]string{wrongKey.Seed}, users.URL()},
		{"URL that does not parse", "nats://alice:pass word-3@127.0.0.1:1", nil,
			[]string{"pass word-3", "word-3"}, "alice:xxxxx@127.0.0.1:1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs syncBuffer
			log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
			opts := append([]nats.Option{nats.Timeout(2 * time.Second)}, tt.opts...)
			n, err := Connect(tt.url, WithLogger(log), WithNATSOptions(opts...))
			if err == nil {
				n.Close()
				t.Fatal("Connect succeeded, want an error")
			}
			assertNoSecret(t, "the error", err.Error(), tt.secrets...)
			assertNoSecret(t, "the log", logs.String(), tt.secrets...)
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not name the server as %q", err, tt.want)
			}
			if strings.Contains(tt.name, "wrong") && !errors.Is(err, nats.ErrAuthorization) &&
				!strings.Contains(strings.ToLower(err.Error()), "authorization") {
				t.Errorf("error %v, want an authorization violation", err)
			}
		})
	}
}

// TestReconnectLogHasNoToken: the "reconnected" log line names the server
// without the token of its URL (nats.go's ConnectedUrlRedacted hides only
// passwords).
func TestReconnectLogHasNoToken(t *testing.T) {
	srv := testenv.Run(t, testenv.WithToken("token-in-url-77"))
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	n, err := Connect(strings.Replace(srv.URL(), "nats://", "nats://token-in-url-77@", 1), WithLogger(log))
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	srv.Restart(t)
	deadline := time.Now().Add(15 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond) // polling the log with a deadline
	defer tick.Stop()
	for !strings.Contains(logs.String(), "reconnected") {
		if time.Now().After(deadline) {
			t.Fatalf("no reconnect logged:\n%s", logs.String())
		}
		<-tick.C
	}
	assertNoSecret(t, "the log", logs.String(), "token-in-url-77")
	if !strings.Contains(logs.String(), "xxxxx@127.0.0.1") {
		t.Errorf("the reconnect line does not name the server:\n%s", logs.String())
	}
}

// credsSecrets returns the JWT and the seed of a creds file: its long
// words, not the decoration around them.
func credsSecrets(creds []byte) []string {
	var out []string
	for _, w := range strings.Fields(string(creds)) {
		if len(w) >= 40 && !strings.HasPrefix(w, "---") {
			out = append(out, w)
		}
	}
	return out
}
