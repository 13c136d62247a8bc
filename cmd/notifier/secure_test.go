package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/natsnotifier/notifier"
	"github.com/natsnotifier/notifier/testenv"
)

// echo answers RPCs with their arguments.
type echo struct{}

func (echo) RPCCall(_ context.Context, _ string, _ int64, _ string, args notifier.Args) (any, error) {
	var v any
	err := args.Decode(&v)
	return v, err
}

// startEcho connects a library Notifier to url with natsOpts and registers
// echo for object "sec", cmd "echo".
func startEcho(t *testing.T, url string, natsOpts ...nats.Option) {
	t.Helper()
	n, err := notifier.Connect(url, notifier.WithNATSOptions(natsOpts...))
	if err != nil {
		t.Fatalf("library Connect: %v", err)
	}
	t.Cleanup(func() { n.Close() })
	if err := n.RPCRegister("sec", notifier.Match{}, "echo", echo{}); err != nil {
		t.Fatal(err)
	}
}

// rpcEcho runs "notifier rpc" against the echo with extra arguments.
func rpcEcho(t *testing.T, extra ...string) (code int, stdout, stderr string) {
	t.Helper()
	args := append([]string{"rpc", "--object", "sec", "--cmd", "echo", "--id", "1", "--json", `"hi"`, "--timeout", "5s"}, extra...)
	return runCmd(t, args...)
}

// okEcho runs rpcEcho and checks that it succeeds.
func okEcho(t *testing.T, extra ...string) {
	t.Helper()
	code, stdout, stderr := rpcEcho(t, extra...)
	wantEcho(t, code, stdout, stderr)
}

// wantEcho checks a successful rpcEcho.
func wantEcho(t *testing.T, code int, stdout, stderr string) {
	t.Helper()
	if code != exitOK || stdout != `{"value":"hi"}`+"\n" {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
}

// withUserInfo puts auth ("user:password" or a token) into a nats:// or
// tls:// URL.
func withUserInfo(url, auth string) string {
	scheme, rest, _ := strings.Cut(url, "://")
	return scheme + "://" + auth + "@" + rest
}

// TestCLIAuthAndTLS: each way of authenticating and of setting up TLS
// works from the CLI against a server that requires it, the library
// answering over the same kind of connection.
func TestCLIAuthAndTLS(t *testing.T) {
	dir := t.TempDir()
	certs, err := testenv.GenerateTLS(dir)
	if err != nil {
		t.Fatal(err)
	}
	key, err := testenv.GenerateNKey(dir, "user")
	if err != nil {
		t.Fatal(err)
	}
	op, err := testenv.GenerateOperator(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	alice := testenv.User{Name: "alice", Password: "pw-alice"}
	tests := []struct {
		name    string
		server  []testenv.Option
		libOpts []nats.Option
		env     map[string]string
		args    func(url string) []string
	}{
		{"user and password", []testenv.Option{testenv.WithUsers(alice)}, []nats.Option{nats.UserInfo("alice", "pw-alice")}, nil,
			func(url string) []string { return []string{"-s", url, "--user", "alice", "--password", "pw-alice"} }},
		{"password in the URL", []testenv.Option{testenv.WithUsers(alice)}, []nats.Option{nats.UserInfo("alice", "pw-alice")}, nil,
			func(url string) []string { return []string{"--server", withUserInfo(url, "alice:pw-alice")} }},
		{"token", []testenv.Option{testenv.WithToken("tok-1")}, []nats.Option{nats.Token("tok-1")}, nil,
			func(url string) []string { return []string{"--url", url, "--token", "tok-1"} }},
		{"user alone is a token", []testenv.Option{testenv.WithToken("tok-1")}, []nats.Option{nats.Token("tok-1")}, nil,
			func(url string) []string { return []string{"--url", url, "--user", "tok-1"} }},
		{"nkey", []testenv.Option{testenv.WithUsers(testenv.User{NKey: key.Public})}, []nats.Option{mustNKey(t, key.SeedFile)}, nil,
			func(url string) []string { return []string{"--url", url, "--nkey", key.SeedFile} }},
		{"creds (operator mode)", []testenv.Option{testenv.WithOperator(op)}, []nats.Option{nats.UserCredentials(op.CredsFile)}, nil,
			func(url string) []string { return []string{"--url", url, "--creds", op.CredsFile} }},
		{"TLS with a private CA", []testenv.Option{testenv.WithTLS(certs)}, []nats.Option{nats.RootCAs(certs.CAFile)}, nil,
			func(url string) []string { return []string{"--url", url, "--tlsca", certs.CAFile} }},
		{"mutual TLS", []testenv.Option{testenv.WithMutualTLS(certs)},
			[]nats.Option{nats.RootCAs(certs.CAFile), nats.ClientCert(certs.ClientCertFile, certs.ClientKeyFile)}, nil,
			func(url string) []string {
				return []string{"--url", url, "--tlsca", certs.CAFile, "--tlscert", certs.ClientCertFile, "--tlskey", certs.ClientKeyFile}
			}},
		{"TLS first", []testenv.Option{testenv.WithTLS(certs), testenv.WithTLSFirst()},
			[]nats.Option{nats.RootCAs(certs.CAFile), nats.TLSHandshakeFirst()}, nil,
			func(url string) []string { return []string{"--url", url, "--tlsca", certs.CAFile, "--tlsfirst"} }},
		{"environment", []testenv.Option{testenv.WithMutualTLS(certs), testenv.WithUsers(alice)},
			[]nats.Option{nats.RootCAs(certs.CAFile), nats.ClientCert(certs.ClientCertFile, certs.ClientKeyFile), nats.UserInfo("alice", "pw-alice")},
			map[string]string{"NATS_USER": "alice", "NATS_PASSWORD": "pw-alice", "NATS_CA": certs.CAFile, "NATS_CERT": certs.ClientCertFile, "NATS_KEY": certs.ClientKeyFile},
			func(url string) []string { t.Setenv("NATS_URL", url); return nil }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := testenv.Run(t, tt.server...)
			startEcho(t, srv.URL(), tt.libOpts...)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			code, stdout, stderr := rpcEcho(t, tt.args(srv.URL())...)
			wantEcho(t, code, stdout, stderr)
			// Without the credentials or the CA the same server refuses.
			code, _, stderr = rpcEcho(t, "--url", srv.URL(), "--no-context")
			if len(tt.env) == 0 && code != exitFail {
				t.Errorf("without credentials: exit %d, want %d\nstderr:\n%s", code, exitFail, stderr)
			}
		})
	}
}

func mustNKey(t *testing.T, seedFile string) nats.Option {
	t.Helper()
	opt, err := nats.NkeyOptionFromSeed(seedFile)
	if err != nil {
		t.Fatal(err)
	}
	return opt
}

// TestCLITLSFailuresSayWhy: without the CA, or without a client
// certificate for mutual TLS, the error says which flag is missing.
func TestCLITLSFailuresSayWhy(t *testing.T) {
	certs, err := testenv.GenerateTLS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	tlsSrv := testenv.Run(t, testenv.WithTLS(certs))
	mutual := testenv.Run(t, testenv.WithMutualTLS(certs))
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--url", tlsSrv.URL()}, "--tlsca"},
		{[]string{"--url", mutual.URL(), "--tlsca", certs.CAFile}, "--tlscert and --tlskey"},
	} {
		code, _, stderr := rpcEcho(t, tt.args...)
		if code != exitFail || !strings.Contains(stderr, tt.want) {
			t.Errorf("%q: exit %d, want %d and a hint about %s\nstderr:\n%s", tt.args, code, exitFail, tt.want, stderr)
		}
	}
}

// TestCLIPubSubMutualTLS: pub and sub, not only rpc, work over mutual TLS.
func TestCLIPubSubMutualTLS(t *testing.T) {
	certs, err := testenv.GenerateTLS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	srv := testenv.Run(t, testenv.WithMutualTLS(certs))
	tlsArgs := []string{"--url", srv.URL(), "--tlsca", certs.CAFile, "--tlscert", certs.ClientCertFile, "--tlskey", certs.ClientKeyFile}
	sub := start(t, append([]string{"sub", "--object", "o", "--cmd", "c", "--count", "1"}, tlsArgs...)...)
	sub.waitFor(t, sub.stderr, "watching")
	if code, _, stderr := runCmd(t, append([]string{"pub", "--object", "o", "--cmd", "c", "--id", "3", "--json", `{"tls":true}`}, tlsArgs...)...); code != exitOK {
		t.Fatalf("pub: exit %d\nstderr:\n%s", code, stderr)
	}
	if code := sub.wait(t); code != exitOK || sub.stdout.String() != "o 3 c {\"tls\":true}\n" {
		t.Fatalf("sub: exit %d\nstdout:\n%s\nstderr:\n%s", code, sub.stdout, sub.stderr)
	}
}

// TestCLIOutputHasNoSecret: with a wrong password, a wrong token, the creds
// of an untrusted operator or a wrong nkey seed, every command that connects
// fails with exit 1, names the server, and prints none of the secrets, on
// stdout or in its log (stderr).
func TestCLIOutputHasNoSecret(t *testing.T) {
	dir := t.TempDir()
	key, err := testenv.GenerateNKey(dir, "good")
	if err != nil {
		t.Fatal(err)
	}
	wrongKey, err := testenv.GenerateNKey(dir, "wrong")
	if err != nil {
		t.Fatal(err)
	}
	users := testenv.Run(t, testenv.WithUsers(testenv.User{Name: "alice", Password: "right-pw"}, testenv.User{NKey: key.Public}))
	tokenSrv := testenv.Run(t, testenv.WithToken("right-token"))
	op, err := testenv.GenerateOperator(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	jwtSrv := testenv.Run(t, testenv.WithOperator(op))
	other, err := testenv.GenerateOperator(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	otherCreds, err := os.ReadFile(other.CredsFile)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		args    []string
		secrets []string
	}{
		{"wrong password flag", []string{"--url", users.URL(), "--user", "alice", "--password", "wrong-pw-S1"}, []string{"wrong-pw-S1"}},
		{"wrong password in URL", []string{"-s", withUserInfo(users.URL(), "alice:wrong-pw-S2")}, []string{"wrong-pw-S2"}},
		{"wrong token flag", []string{"--url", tokenSrv.URL(), "--token", "wrong-token-S3"}, []string{"wrong-token-S3"}},
		{"wrong token in URL", []string{"--server", withUserInfo(tokenSrv.URL(), "wrong-token-S4")}, []string{"wrong-token-S4"}},
		{"untrusted creds", []string{"--url", jwtSrv.URL(), "--creds", other.CredsFile}, append(credsSecrets(otherCreds), other.UserSeed)},
		{"wrong nkey", []string{"--url", users.URL(), "--nkey", wrongKey.SeedFile}, []string{wrongKey.Seed}},
	}
	commands := [][]string{
		{"pub", "--object", "o", "--cmd", "c", "--id", "1"},
		{"rpc", "--object", "o", "--cmd", "c", "--id", "1"},
		{"sub", "--object", "o", "--cmd", "c"},
		{"serve"},
		{"demo"},
	}
	for _, cmd := range commands {
		for _, c := range cases {
			t.Run(cmd[0]+"/"+c.name, func(t *testing.T) {
				code, stdout, stderr := runCmd(t, append(append([]string{}, cmd...), c.args...)...)
				if code != exitFail {
					t.Errorf("exit %d, want %d\nstderr:\n%s", code, exitFail, stderr)
				}
				for _, s := range c.secrets {
					if s != "" && (strings.Contains(stdout, s) || strings.Contains(stderr, s)) {
						t.Errorf("the output holds the secret %q\nstdout:\n%s\nstderr:\n%s", s, stdout, stderr)
					}
				}
				if !strings.Contains(stderr, "cannot connect to NATS at ") {
					t.Errorf("stderr does not name the server:\n%s", stderr)
				}
			})
		}
	}
}

// TestServeLogHasNoToken: serve's log, including the reconnect after a
// server restart, never holds the token of its URL.
func TestServeLogHasNoToken(t *testing.T) {
	srv := testenv.Run(t, testenv.WithToken("serve-token-S5"))
	p := startServe(t, "--url", withUserInfo(srv.URL(), "serve-token-S5"))
	srv.Restart(t)
	p.waitFor(t, p.stderr, "reconnected")
	stopServe(t, p)
	for name, out := range map[string]string{"stdout": p.stdout.String(), "stderr": p.stderr.String()} {
		if strings.Contains(out, "serve-token-S5") {
			t.Errorf("%s holds the token:\n%s", name, out)
		}
	}
	if !strings.Contains(p.stdout.String(), "xxxxx@127.0.0.1") {
		t.Errorf("stdout does not name the server redacted:\n%s", p.stdout)
	}
}

// writeContext writes a nats CLI context file into the configuration
// directory $XDG_CONFIG_HOME/nats and returns its path.
func writeContext(t *testing.T, name string, settings map[string]any) string {
	t.Helper()
	dir := filepath.Join(os.Getenv("XDG_CONFIG_HOME"), "nats", "context")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(settings)
	if err != nil {
		t.Fatal(err)
	}
	return writeFile(t, dir, name+".json", string(data))
}

// selectContext writes the nats CLI's selected-context file.
func selectContext(t *testing.T, name string) {
	t.Helper()
	writeFile(t, filepath.Join(os.Getenv("XDG_CONFIG_HOME"), "nats"), "context.txt", name)
}

// TestContextPrecedence: flags > context > environment; the context is the
// one of --context, else $NATS_CONTEXT, else the selected one.
func TestContextPrecedence(t *testing.T) {
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	certs, err := testenv.GenerateTLS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	srv := testenv.Run(t, testenv.WithTLS(certs), testenv.WithUsers(testenv.User{Name: "alice", Password: "ctx-pw"}))
	startEcho(t, srv.URL(), nats.RootCAs(certs.CAFile), nats.UserInfo("alice", "ctx-pw"))
	closed := closedURL(t)
	devPath := writeContext(t, "dev", map[string]any{"url": srv.URL(), "user": "alice", "password": "ctx-pw", "ca": certs.CAFile})
	writeContext(t, "down", map[string]any{"url": closed})
	t.Setenv("NATS_URL", closedURL(t)) // the environment, beaten by any context
	t.Setenv("NATS_USER", "env-user")

	// No context selected: the environment's URL.
	code, _, stderr := rpcEcho(t)
	if code != exitFail || !strings.Contains(stderr, "cannot connect to NATS at "+os.Getenv("NATS_URL")) {
		t.Fatalf("no context: exit %d, want a failure at $NATS_URL\nstderr:\n%s", code, stderr)
	}
	selectContext(t, "dev")
	okEcho(t) // the selected context beats the environment
	code, _, stderr = rpcEcho(t, "--user", "alice", "--password", "flag-wrong-S6")
	if code != exitFail || strings.Contains(stderr, "flag-wrong-S6") {
		t.Errorf("a flag's password beats the context's: exit %d\nstderr:\n%s", code, stderr)
	}
	code, _, stderr = rpcEcho(t, "--context", "down")
	if code != exitFail || !strings.Contains(stderr, "cannot connect to NATS at "+closed) {
		t.Errorf("--context beats the selected one: exit %d\nstderr:\n%s", code, stderr)
	}
	t.Setenv("NATS_CONTEXT", "down")
	code, _, stderr = rpcEcho(t)
	if code != exitFail || !strings.Contains(stderr, "cannot connect to NATS at "+closed) {
		t.Errorf("$NATS_CONTEXT beats the selected one: exit %d\nstderr:\n%s", code, stderr)
	}
	okEcho(t, "--context", devPath) // a context file by its path
	code, _, stderr = rpcEcho(t, "--no-context")
	if code != exitFail || !strings.Contains(stderr, "cannot connect to NATS at "+os.Getenv("NATS_URL")) {
		t.Errorf("--no-context: exit %d, want a failure at $NATS_URL\nstderr:\n%s", code, stderr)
	}
	code, _, stderr = rpcEcho(t, "--context", "dev", "-s", closed)
	if code != exitFail || !strings.Contains(stderr, "cannot connect to NATS at "+closed) {
		t.Errorf("-s beats the context's url: exit %d\nstderr:\n%s", code, stderr)
	}
	if strings.Contains(stderr, "ctx-pw") {
		t.Errorf("the context's password was printed:\n%s", stderr)
	}
	// serve joins the context's server with --context (a selected context
	// alone leaves it embedded).
	p := startServe(t, "--context", "dev")
	if !strings.Contains(p.stdout.String(), "NATS at "+srv.URL()) {
		t.Errorf("serve --context dev did not join %s:\n%s", srv.URL(), p.stdout)
	}
	stopServe(t, p)
	if strings.Contains(p.stdout.String()+p.stderr.String(), "ctx-pw") {
		t.Errorf("serve printed the context's password")
	}
}

// TestJSONFileAndStdin: arguments far beyond a command line's limit (about
// 128 KiB) go through --json-file and stdin.
func TestJSONFileAndStdin(t *testing.T) {
	srv := testenv.Run(t)
	startEcho(t, srv.URL())
	big := strings.Repeat("y", 300<<10) // 300 KiB, under the 1 MiB max payload
	path := writeFile(t, t.TempDir(), "big.json", `"`+big+`"`)
	base := []string{"rpc", "--url", srv.URL(), "--object", "sec", "--cmd", "echo", "--id", "1"}
	for name, p := range map[string]*proc{
		"file":        start(t, append(base, "--json-file", path)...),
		"stdin -":     startIn(t, strings.NewReader(`"`+big+`"`), append(base, "--json", "-")...),
		"file - (in)": startIn(t, strings.NewReader(`"`+big+`"`), append(base, "--json-file", "-")...),
	} {
		if code := p.wait(t); code != exitOK || p.stdout.String() != `{"value":"`+big+`"}`+"\n" {
			t.Errorf("%s: exit %d, stdout %d bytes\nstderr:\n%s", name, code, len(p.stdout.String()), p.stderr)
		}
	}
	sub := start(t, "sub", "--url", srv.URL(), "--object", "o", "--cmd", "c", "--count", "1")
	sub.waitFor(t, sub.stderr, "watching")
	if code, _, stderr := runCmd(t, "pub", "--url", srv.URL(), "--object", "o", "--cmd", "c", "--id", "1", "--json-file", path); code != exitOK {
		t.Fatalf("pub --json-file: exit %d\nstderr:\n%s", code, stderr)
	}
	if code := sub.wait(t); code != exitOK || sub.stdout.String() != `o 1 c "`+big+`"`+"\n" {
		t.Errorf("sub: exit %d, got %d bytes", code, len(sub.stdout.String()))
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
