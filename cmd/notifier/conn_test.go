package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/natsnotifier/notifier/testenv"
)

// writeFile writes data to dir/name and returns the path.
func writeFile(t *testing.T, dir, name, data string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestBadSettingsBeforeConnecting: every bad flag, context or environment
// value is reported with exit status 2 before any connection is tried (the
// URL is a closed port: trying would say "cannot connect").
func TestBadSettingsBeforeConnecting(t *testing.T) {
	dir := t.TempDir()
	certs, err := testenv.GenerateTLS(dir)
	if err != nil {
		t.Fatal(err)
	}
	garbage := writeFile(t, dir, "garbage", "this is no key")
	missing := filepath.Join(dir, "missing")
	acctKey, err := testenv.GenerateNKey(dir, "u")
	if err != nil {
		t.Fatal(err)
	}
	badCtx := writeFile(t, dir, "bad.json", `{"url": 5}`)
	nscCtx := writeFile(t, dir, "nsc.json", `{"nsc": "nsc://op/acc/user"}`)
	url := closedURL(t)
	pub := []string{"pub", "--object", "o", "--cmd", "c", "--id", "1"}
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want string // in stderr
	}{
		{"missing creds file", nil, []string{"--creds", missing}, "--creds " + missing},
		{"creds not a creds file", nil, []string{"--creds", garbage}, "not a user credentials file"},
		{"missing nkey file", nil, []string{"--nkey", missing}, "--nkey " + missing},
		{"nkey not a seed", nil, []string{"--nkey", garbage}, "not an nkey seed file"},
		{"cert without key", nil, []string{"--tlscert", certs.ClientCertFile}, "needs a TLS key"},
		{"key without cert", nil, []string{"--tlskey", certs.ClientKeyFile}, "needs a TLS certificate"},
		{"cert and a wrong key", nil, []string{"--tlscert", certs.ClientCertFile, "--tlskey", certs.ServerKeyFile}, "not a usable certificate and key"},
		{"missing CA", nil, []string{"--tlsca", missing}, "--tlsca " + missing},
		{"CA not PEM", nil, []string{"--tlsca", garbage}, "no PEM certificate"},
		{"password without user", nil, []string{"--password", "pw"}, "needs a user"},
		{"token and user", nil, []string{"--token", "t", "--user", "u"}, "give one way to authenticate"},
		{"creds and nkey", nil, []string{"--creds", garbage, "--nkey", acctKey.SeedFile}, "give one way to authenticate"},
		{"blank server", nil, []string{"--server", " "}, "--server is blank"},
		{"bad scheme", nil, []string{"-s", "http://127.0.0.1:1"}, `scheme "http"`},
		{"bad port", nil, []string{"--url", "nats://127.0.0.1:99999"}, `port "99999"`},
		{"empty URL in list", nil, []string{"--url", url + ","}, "an empty URL"},
		{"unknown context", nil, []string{"--context", "nosuch"}, `context "nosuch": no such context`},
		{"blank context", nil, []string{"--context", " "}, "--context is blank"},
		{"context and no-context", nil, []string{"--context", "x", "--no-context"}, "give one"},
		{"context file not JSON", nil, []string{"--context", badCtx}, "not a nats context file"},
		{"context with nsc", nil, []string{"--context", nscCtx}, `"nsc" is not supported`},
		{"NATS_CREDS missing", map[string]string{"NATS_CREDS": missing}, nil, "$NATS_CREDS " + missing},
		{"NATS_URL bad", map[string]string{"NATS_URL": "ftp://x"}, []string{"--no-context"}, "$NATS_URL ftp://x"},
		{"NATS_CONTEXT unknown", map[string]string{"NATS_CONTEXT": "gone"}, nil, `$NATS_CONTEXT: context "gone"`},
		{"json file missing", nil, []string{"--json-file", missing}, "--json-file " + missing},
		{"json and json file", nil, []string{"--json", "1", "--json-file", garbage}, "not both"},
		{"json file not JSON", nil, []string{"--json-file", garbage}, "invalid JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			args := append(append([]string{}, pub...), tt.args...)
			if !hasURLFlag(tt.args) && tt.env["NATS_URL"] == "" {
				args = append(args, "--url", url)
			}
			code, stdout, stderr := runCmd(t, args...)
			if code != exitUsage {
				t.Errorf("exit %d, want %d\nstderr:\n%s", code, exitUsage, stderr)
			}
			if !strings.Contains(stderr, tt.want) {
				t.Errorf("stderr does not say %q:\n%s", tt.want, stderr)
			}
			if strings.Contains(stderr, "cannot connect") || stdout != "" {
				t.Errorf("it tried to connect:\nstdout:\n%s\nstderr:\n%s", stdout, stderr)
			}
			for _, secret := range []string{"this is no key", acctKey.Seed} {
				if strings.Contains(stderr, secret) {
					t.Errorf("stderr holds the contents of a key file:\n%s", stderr)
				}
			}
		})
	}
}

func hasURLFlag(args []string) bool {
	for _, a := range args {
		switch strings.TrimLeft(a, "-") {
		case "url", "server", "s":
			return true
		}
	}
	return false
}

// TestOtherFlagsBeforeConnecting: the non-connection flags of every command
// are checked before connecting too (a closed port would fail with 1).
func TestOtherFlagsBeforeConnecting(t *testing.T) {
	url := closedURL(t)
	for _, args := range [][]string{
		{"sub", "--url", url, "--object", "demo", "--cmd", "log", "--slice", "--weight", "-1"},
		{"sub", "--url", url, "--object", "demo", "--cmd", "log", "--slice", "--weight", "NaN"},
		{"sub", "--url", url, "--object", "demo", "--cmd", "log", "--slice", "--weight", "+Inf"},
		{"sub", "--url", url, "--object", "demo", "--cmd", "log", "--count", "-1"},
		{"rpc", "--url", url, "--object", "demo", "--cmd", "echo", "--id", "1", "--timeout", "-1s"},
		{"pub", "--url", url, "--object", "demo", "--cmd", "log", "--id", "1", "--count", "0"},
		{"serve", "--url", url, "--prefix", "a..b"},
		{"serve", "--port", "0"},
		{"serve", "--creds", "x"}, // embedded: credentials need a server of the user's
		{"demo", "--url", url, "--n", "0"},
		{"demo", "--token", "t"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			code, _, stderr := runCmd(t, args...)
			if code != exitUsage || strings.Contains(stderr, "cannot connect") {
				t.Errorf("exit %d, want %d before connecting\nstderr:\n%s", code, exitUsage, stderr)
			}
		})
	}
}

// TestHelpDocumentsConnecting: the help of every command that connects
// lists the nats CLI's flags and says the precedence.
func TestHelpDocumentsConnecting(t *testing.T) {
	for _, cmd := range []string{"pub", "rpc", "sub", "serve", "demo"} {
		code, stdout, _ := runCmd(t, cmd, "--help")
		if code != exitOK {
			t.Fatalf("%s --help: exit %d", cmd, code)
		}
		for _, want := range []string{"Precedence: flags > context > environment", "-creds", "-nkey", "-tlsca", "-tlsfirst", "-context", "-server", "$NATS_URL"} {
			if !strings.Contains(stdout, want) {
				t.Errorf("%s --help does not mention %q", cmd, want)
			}
		}
	}
}
