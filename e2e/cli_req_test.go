package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"testing"

	"github.com/natsnotifier/notifier"
)

// cliReply is the gateway's JSON reply as a client outside the library sees
// it: {"results":[{"value":...},{"error":{"code":1,"message":"..."}}],"error":"..."}.
type cliReply struct {
	Results []struct {
		Value json.RawMessage `json:"value"`
		Error *struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	} `json:"results"`
	Error string `json:"error"`
}

// natsReq runs `nats req --raw` and parses the one reply it prints.
func natsReq(t testing.TB, url string, args ...string) cliReply {
	t.Helper()
	all := append([]string{"req", "--raw", "--no-templates", "--timeout", "10s"}, args...)
	out := natsCLI(t, url, all...)
	dec := json.NewDecoder(bytes.NewReader([]byte(out)))
	var r cliReply
	if err := dec.Decode(&r); err != nil {
		t.Fatalf("nats req %v: reply is not JSON: %v\n%s", args, err, out)
	}
	var extra any
	if err := dec.Decode(&extra); err != io.EOF {
		t.Fatalf("nats req %v: more than one JSON value printed: %q", args, out)
	}
	if r.Results == nil {
		t.Fatalf("nats req %v: reply has no \"results\" array: %s", args, out)
	}
	return r
}

// TestCLIRequest: `nats req notifier.rpc.<object>.<cmd>.<id> '<json>'`
// answers JSON with the result of every matching full RPC registration on
// every Notifier plus one slice, handler errors included.
func TestCLIRequest(t *testing.T) { forEachServer(t, testCLIRequest) }

func testCLIRequest(t *testing.T, url string) {
	a, b := connect(t, url, 1), connect(t, url, 2)
	const object, cmd, id = "e2erpc", "get", int64(5)
	fullA := &responder{name: "full-a"}
	fullB := &responder{name: "full-b", fail: true}
	sliceA, sliceB := &responder{name: "slice-a"}, &responder{name: "slice-b"}
	sub := &recorder{}
	must(t, a.RPCRegister(object, notifier.Match{}, cmd, fullA))
	must(t, b.RPCRegister(object, notifier.Exact(id), cmd, fullB))
	must(t, a.RPCSlice(object, notifier.Match{}, cmd, sliceA, 1))
	must(t, b.RPCSlice(object, notifier.Match{Mask: 1, Value: 1}, cmd, sliceB, 1))
	must(t, a.Subscribe(object, notifier.Match{}, cmd, sub)) // an RPC never reaches a Subscriber

	const rounds = 4
	for i := range rounds {
		n := 100 + i
		r := natsReq(t, url, "notifier.rpc."+addr(object, cmd, id), fmt.Sprintf(`{"n":%d}`, n))
		if r.Error != "" {
			t.Errorf("round %d: reply error %q", i, r.Error)
		}
		if len(r.Results) != 3 {
			t.Fatalf("round %d: %d results, want 3 (full A, full B failing, one slice): %+v", i, len(r.Results), r)
		}
		var who []string
		handlerErrors := 0
		for _, res := range r.Results {
			if res.Error != nil {
				if res.Error.Code != notifier.CodeHandler || res.Error.Message == "" {
					t.Errorf("round %d: error %+v, want code %d with a message", i, *res.Error, notifier.CodeHandler)
				}
				if len(res.Value) != 0 {
					t.Errorf("round %d: a result has both an error and a value %s", i, res.Value)
				}
				handlerErrors++
				continue
			}
			var ans answer
			if err := json.Unmarshal(res.Value, &ans); err != nil {
				t.Fatalf("round %d: value %s: %v", i, res.Value, err)
			}
			if ans.N != n || ans.ID != id {
				t.Errorf("round %d: %s answered n=%d id=%d, want n=%d id=%d (the JSON args decoded)", i, ans.Who, ans.N, ans.ID, n, id)
			}
			who = append(who, ans.Who)
		}
		slices.Sort(who)
		if handlerErrors != 1 || len(who) != 2 || who[0] != "full-a" || (who[1] != "slice-a" && who[1] != "slice-b") {
			t.Errorf("round %d: answers from %v and %d handler errors; want full-a, one slice, 1 error", i, who, handlerErrors)
		}
	}
	if fa, fb := fullA.calls.Load(), fullB.calls.Load(); fa != rounds || fb != rounds {
		t.Errorf("full responders called %d and %d times, want %d each", fa, fb, rounds)
	}
	if s := sliceA.calls.Load() + sliceB.calls.Load(); s != rounds {
		t.Errorf("slices called %d times together, want %d", s, rounds)
	}
	if n := sub.count(); n != 0 {
		t.Errorf("Subscriber notified %d times by RPCs", n)
	}

	// Nothing registered: a JSON reply saying so, no waiting for a timeout.
	r := natsReq(t, url, "notifier.rpc."+addr(object, "nobody", id), `{}`)
	if r.Error == "" || len(r.Results) != 0 {
		t.Errorf("RPC to nobody: reply %+v, want an error and no results", r)
	}
}

// TestCLIBadInput: bad input from the CLI is counted, never delivered, gets a
// clear JSON error reply for a request, and leaves the Notifiers working.
func TestCLIBadInput(t *testing.T) { forEachServer(t, testCLIBadInput) }

func testCLIBadInput(t *testing.T, url string) {
	a, b := connect(t, url, 1), connect(t, url, 2)
	const object = "e2ebad"
	sub := &recorder{}
	resp := &responder{name: "r"}
	must(t, a.Subscribe(object, notifier.Match{}, "put", sub))
	must(t, b.RPCRegister(object, notifier.Match{}, "get", resp))
	undecodable := func() uint64 { return a.Stats().Undecodable + b.Stats().Undecodable }

	msgpack := []string{"-H", "Content-Type:" + notifier.ContentTypeMsgpack}
	plain := []string{"-H", "Content-Type:text/plain"}
	cases := []struct {
		name    string
		headers []string
		addr    string // <object>.<cmd>.<id>, <cmd> being put or get
		body    string
	}{
		{"truncated JSON", nil, object + ".%s.1", `{"n":`},
		{"not JSON", nil, object + ".%s.1", `hello`},
		{"JSON with a header", []string{"-H", "Content-Type:application/json; charset=utf-8"}, object + ".%s.1", `{"n":1`},
		{"id not a number", nil, object + ".%s.one", `{"n":1}`},
		{"no id", nil, object + ".%s", `{"n":1}`},
		{"bad msgpack", msgpack, object + ".%s.1", "\xc1"},
		{"unsupported content type", plain, object + ".%s.1", `{"n":1}`},
	}
	for _, c := range cases {
		t.Run("pub/"+c.name, func(t *testing.T) {
			before := undecodable()
			args := append(append([]string{"pub", "--no-templates"}, c.headers...), "notifier.pub."+fmt.Sprintf(c.addr, "put"), c.body)
			natsCLI(t, url, args...)
			eventually(t, gatewayTimeout, func() bool { return undecodable() == before+1 }, func() string {
				return fmt.Sprintf("Undecodable went from %d to %d, want +1", before, undecodable())
			})
		})
		t.Run("req/"+c.name, func(t *testing.T) {
			before := undecodable()
			args := append(append([]string(nil), c.headers...), "notifier.rpc."+fmt.Sprintf(c.addr, "get"), c.body)
			r := natsReq(t, url, args...)
			if r.Error == "" || len(r.Results) != 0 {
				t.Errorf("reply %+v, want an error and no results", r)
			}
			eventually(t, gatewayTimeout, func() bool { return undecodable() == before+1 }, func() string {
				return fmt.Sprintf("Undecodable went from %d to %d, want +1", before, undecodable())
			})
		})
	}

	// Still working, and nothing bad was delivered.
	natsCLI(t, url, "pub", "--no-templates", "notifier.pub."+addr(object, "put", 2), `{"n":2,"name":"ok"}`)
	eventually(t, gatewayTimeout, func() bool { return sub.count() == 1 }, func() string {
		return fmt.Sprintf("good publish after bad ones: %d notifications, want 1", sub.count())
	})
	if got, _, _, _ := sub.snapshot(); got[0].N != 2 || got[0].Name != "ok" {
		t.Errorf("delivered %+v, want the good publish only", got)
	}
	r := natsReq(t, url, "notifier.rpc."+addr(object, "get", 2), `{"n":2}`)
	var ans answer
	if r.Error != "" || len(r.Results) != 1 || json.Unmarshal(r.Results[0].Value, &ans) != nil || ans.Who != "r" || ans.N != 2 {
		t.Errorf("good request after bad ones: %+v", r)
	}
	if n := resp.calls.Load(); n != 1 {
		t.Errorf("responder called %d times, want 1 (the good request only)", n)
	}
}
