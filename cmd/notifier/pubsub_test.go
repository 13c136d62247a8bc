package main

import (
	"strings"
	"testing"

	"github.com/natsnotifier/notifier/testenv"
)

// TestPubReachesSub: a full sub with a mask receives the matching publishes
// of pub, in order, and exits after --count.
func TestPubReachesSub(t *testing.T) {
	url := testenv.Run(t).URL()
	sub := start(t, "sub", "--url", url, "--object", "sensor", "--cmd", "temp", "--mask", "1", "--value", "1", "--count", "3")
	sub.waitFor(t, sub.stderr, "notifier sub: watching object=sensor cmd=temp ids=id&0x1==0x1 (full registration)")

	for _, id := range []string{"1", "2", "3", "4", "5"} {
		code, stdout, stderr := runCmd(t, "pub", "--url", url, "--object", "sensor", "--cmd", "temp", "--id", id, "--json", `{"celsius":21,"id":`+id+`}`)
		if code != exitOK || !strings.Contains(stdout, "published 1 notification(s)") {
			t.Fatalf("pub --id %s: exit %d\nstdout:\n%s\nstderr:\n%s", id, code, stdout, stderr)
		}
	}
	if code := sub.wait(t); code != exitOK {
		t.Fatalf("sub: exit %d\nstderr:\n%s", code, sub.stderr)
	}
	want := "sensor 1 temp {\"celsius\":21,\"id\":1}\n" +
		"sensor 3 temp {\"celsius\":21,\"id\":3}\n" +
		"sensor 5 temp {\"celsius\":21,\"id\":5}\n"
	if got := sub.stdout.String(); got != want {
		t.Errorf("sub printed:\n%s\nwant:\n%s", got, want)
	}
}

// TestPubSlice: with one full sub and two slice subs, every publish reaches
// the full sub and exactly one slice; a standby slice gets nothing while a
// weighted one exists.
func TestPubSlice(t *testing.T) {
	url := testenv.Run(t).URL()
	const n = "20"
	full := start(t, "sub", "--url", url, "--object", "jobs", "--cmd", "run", "--count", n)
	full.waitFor(t, full.stderr, "watching")
	slice := start(t, "sub", "--url", url, "--object", "jobs", "--cmd", "run", "--id", "7", "--slice", "--weight", "2", "--count", n)
	slice.waitFor(t, slice.stderr, "(slice, weight 2)")
	standby := start(t, "sub", "--url", url, "--object", "jobs", "--cmd", "run", "--slice", "--weight", "0")
	standby.waitFor(t, standby.stderr, "(slice, weight 0)")

	code, stdout, stderr := runCmd(t, "pub", "--url", url, "--object", "jobs", "--cmd", "run", "--id", "7", "--count", n)
	if code != exitOK || !strings.Contains(stdout, "published "+n+" notification(s)") {
		t.Fatalf("pub: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	for _, p := range []*proc{full, slice} {
		if code := p.wait(t); code != exitOK {
			t.Fatalf("%q: exit %d\nstderr:\n%s", p.args, code, p.stderr)
		}
		if got := strings.Count(p.stdout.String(), "jobs 7 run null\n"); got != 20 {
			t.Errorf("%q printed %d notifications, want 20:\n%s", p.args, got, p.stdout)
		}
	}
	// The standby slice is still registered: stop it and check it got nothing.
	standby.cancel()
	if code := standby.wait(t); code != exitOK {
		t.Fatalf("standby sub: exit %d\nstderr:\n%s", code, standby.stderr)
	}
	if got := standby.stdout.String(); got != "" {
		t.Errorf("standby slice received:\n%s", got)
	}
}

// TestSubStopsOnCancel: without --count, sub runs until interrupted and then
// exits 0.
func TestSubStopsOnCancel(t *testing.T) {
	url := testenv.Run(t).URL()
	sub := start(t, "sub", "--url", url, "--object", "o", "--cmd", "c")
	sub.waitFor(t, sub.stderr, "watching")
	sub.cancel()
	if code := sub.wait(t); code != exitOK {
		t.Fatalf("exit %d\nstderr:\n%s", code, sub.stderr)
	}
}

// TestPrefix: buses with different prefixes do not see each other.
func TestPrefix(t *testing.T) {
	url := testenv.Run(t).URL()
	sub := start(t, "sub", "--url", url, "--prefix", "other.bus", "--object", "o", "--cmd", "c", "--count", "1")
	sub.waitFor(t, sub.stderr, "watching")
	for _, args := range [][]string{
		{"pub", "--url", url, "--object", "o", "--cmd", "c", "--id", "1"},
		{"pub", "--url", url, "--prefix", "other.bus", "--object", "o", "--cmd", "c", "--id", "2"},
	} {
		if code, _, stderr := runCmd(t, args...); code != exitOK {
			t.Fatalf("%q: exit %d\nstderr:\n%s", args, code, stderr)
		}
	}
	if code := sub.wait(t); code != exitOK {
		t.Fatalf("sub: exit %d\nstderr:\n%s", code, sub.stderr)
	}
	if got, want := sub.stdout.String(), "o 2 c null\n"; got != want {
		t.Errorf("sub printed %q, want %q", got, want)
	}
}
