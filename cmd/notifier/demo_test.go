package main

import (
	"strings"
	"testing"

	"github.com/natsnotifier/notifier/testenv"
)

// demoSections are the headings the demo prints, in order.
var demoSections = []string{
	"Notifier demo: NATS ",
	"\n1. Registrations for object \"sensor\", cmd \"reading\"\n",
	"\n2. A publishes 200 notifications to ids 1..8 in turn\n",
	"\n3. What each registration received\n",
	"\n4. RPC registrations for object \"sensor\", cmd \"status\"\n",
	"\n5. A.RPC(",
	"\n6. A.RPCs(",
	"\n7. A.RPC(ctx, \"sensor\", -1,",
	"\n8. A.RPC(ctx, \"sensor\", 1, \"reboot\", nil): nothing registered\n",
	"\n9. A.RPCCall(",
	"\nEvery check passed.\n",
}

func checkDemo(t *testing.T, code int, stdout, stderr string) {
	t.Helper()
	if code != exitOK {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	rest := stdout
	for _, s := range demoSections {
		i := strings.Index(rest, s)
		if i < 0 {
			t.Fatalf("no %q after the previous section:\n%s", s, stdout)
		}
		rest = rest[i+len(s):]
	}
	for _, want := range []string{
		"   A full, id 3                 25  25       every publish to id 3: ok\n",
		"   B full, every id            200  200      every publish to every id: ok\n",
		"   B full, even ids            100  100      every publish to even ids: ok\n",
		"   A slice, weight 0             0  0        standby while a weighted slice matches: ok\n",
		"   all slices                  200  200      exactly one slice per publish: ok\n",
		"   calls with 3 results: 100 of 100: ok\n",
		"   err \"notifier: no responders\", at once, without waiting for a timeout: ok\n",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("no line %q in:\n%s", want, stdout)
		}
	}
	if strings.Contains(stdout, "FAILED") || stderr != "" {
		t.Errorf("a check failed\nstdout:\n%s\nstderr:\n%s", stdout, stderr)
	}
}

// received returns section 3 of the demo's output without its timing line.
func received(stdout string) string {
	s := stdout[strings.Index(stdout, "\n3. "):strings.Index(stdout, "\n4. ")]
	return s[:strings.Index(s, "   (delivered in")]
}

func TestDemo(t *testing.T) {
	url := testenv.Run(t).URL()
	code, stdout, stderr := runCmd(t, "demo", "--url", url, "--n", "200")
	checkDemo(t, code, stdout, stderr)
	if !strings.HasPrefix(stdout, "Notifier demo: NATS at "+url+", prefix \"notifier\".\n") {
		t.Errorf("the demo does not say which server it uses:\n%s", stdout)
	}

	// The same seed draws the same slices, on another server.
	code, again, stderr := runCmd(t, "demo", "--n", "200")
	checkDemo(t, code, again, stderr)
	if !strings.HasPrefix(again, "Notifier demo: NATS embedded at nats://127.0.0.1:") {
		t.Errorf("the demo does not say it runs an embedded server:\n%s", again)
	}
	if a, b := received(stdout), received(again); a != b {
		t.Errorf("the same seed gave different splits:\n%s\nand\n%s", a, b)
	}
}
