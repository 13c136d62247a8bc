package notifier

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natsnotifier/notifier/bus"
)

// Content types understood on the gateway subjects.
const (
	ContentTypeJSON    = "application/json"
	ContentTypeMsgpack = "application/msgpack"
)

// GatewayReply is the JSON answer to an RPC made on
// <prefix>.rpc.<object>.<cmd>.<id> by a client outside the library.
type GatewayReply struct {
	Results []GatewayResult `json:"results"`
	Error   string          `json:"error,omitempty"` // ErrNoResponders, a timeout, bad input
}

// GatewayResult is one responder's answer in a GatewayReply.
type GatewayResult struct {
	Value *Args        `json:"value,omitempty"`
	Error *RemoteError `json:"error,omitempty"`
}

// MarshalJSON of RemoteError gives {"code":..,"message":..}.
func (e *RemoteError) MarshalJSON() ([]byte, error) {
	return marshalJSON(struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}{e.Code, e.Message})
}

// UnmarshalJSON is the inverse of MarshalJSON.
func (e *RemoteError) UnmarshalJSON(b []byte) error {
	var w struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	e.Code, e.Message = w.Code, w.Message
	return nil
}

// UnmarshalJSON keeps the raw JSON as Args.
func (a *Args) UnmarshalJSON(b []byte) error {
	a.data = append([]byte(nil), b...)
	a.json = true
	return nil
}

// subscribeGateway makes this Notifier one of the gateways that turn messages
// from other NATS clients into publishes and RPCs with the full rules.
func (n *Notifier) subscribeGateway() error {
	queue := n.subj.GatewayQueue()
	for _, k := range []bus.Kind{bus.KindPub, bus.KindRPC} {
		prefix := n.subj.Gateway(k)
		cb := func(m *nats.Msg) { n.onGatewayPub(m, len(prefix)) }
		if k == bus.KindRPC {
			cb = func(m *nats.Msg) { n.onGatewayRPC(m, len(prefix)) }
		}
		sub, err := n.nc.QueueSubscribe(prefix+">", queue, cb)
		if err != nil {
			return fmt.Errorf("notifier: subscribe gateway: %w", err)
		}
		n.subs = append(n.subs, sub)
	}
	return nil
}

// gatewayMsg is a message from outside the library, checked.
type gatewayMsg struct {
	object, cmd string
	id          int64
	body        []byte
	json        bool
}

// parseGatewayAddr parses <object>.<cmd>.<id>, the subject after the
// gateway prefix, telling a bad name from a bad id.
func parseGatewayAddr(subject, addr string) (object, cmd string, id int64, err error) {
	object, rest, ok1 := strings.Cut(addr, ".")
	cmd, ids, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || strings.IndexByte(ids, '.') >= 0 {
		return "", "", 0, fmt.Errorf("%w: subject %q is not <prefix>.<pub|rpc>.<object>.<cmd>.<id>", ErrInvalidName, subject)
	}
	if err := checkNames(object, cmd); err != nil {
		return "", "", 0, fmt.Errorf("%w (subject %q)", err, subject)
	}
	id, perr := strconv.ParseInt(ids, 10, 64)
	if perr != nil {
		return "", "", 0, fmt.Errorf("%w: %q in subject %q is not a decimal int64", ErrInvalidID, ids, subject)
	}
	return object, cmd, id, nil
}

// parseGateway checks a message from outside: its address (subject after
// skip bytes), its Content-Type and its body, which must hold exactly one
// value: JSON by default, msgpack under wire.Check's bounds. It keeps no
// state; the body it returns shares memory with data.
func parseGateway(subject string, skip int, h nats.Header, data []byte) (gatewayMsg, error) {
	var g gatewayMsg
	var err error
	g.object, g.cmd, g.id, err = parseGatewayAddr(subject, subject[skip:])
	if err != nil {
		return gatewayMsg{}, err
	}
	ct := ""
	if h != nil {
		ct = strings.ToLower(strings.TrimSpace(h.Get("Content-Type")))
		if i := strings.IndexByte(ct, ';'); i >= 0 {
			ct = strings.TrimSpace(ct[:i])
		}
	}
	switch ct {
	case "", ContentTypeJSON:
		g.json = true
	case ContentTypeMsgpack:
	default:
		return gatewayMsg{}, fmt.Errorf("%w: unsupported Content-Type %q", ErrDecode, ct)
	}
	if err := checkBody(data, g.json); err != nil {
		return gatewayMsg{}, err
	}
	g.body = data
	if len(data) == 0 {
		g.json = false // empty is nil args in either codec
	}
	return g, nil
}

// onGatewayPub publishes a message from outside with the full rules. A body
// that does not fit in the server's max payload with the routing header
// (19 bytes at most) is refused as a whole, counted in Stats().Dropped and
// logged: nothing of it is delivered.
func (n *Notifier) onGatewayPub(m *nats.Msg, skip int) {
	g, err := parseGateway(m.Subject, skip, m.Header, m.Data)
	if err != nil {
		n.stats.undecoded.Add(1)
		n.log.Warn("notifier: gateway publish rejected", "subject", m.Subject, "err", err)
		if m.Reply != "" {
			n.gatewayReply(m.Reply, nil, err)
		}
		return
	}
	if err := n.checkSize(g.body); err != nil {
		n.stats.dropped.Add(1)
		n.log.Warn("notifier: gateway publish refused", "subject", m.Subject, "err", err)
		if m.Reply != "" {
			n.gatewayReply(m.Reply, nil, err)
		}
		return
	}
	if err := n.publish(g.object, g.id, g.cmd, g.body, g.json, true, false, 0); err != nil {
		n.stats.dropped.Add(1)
		n.log.Warn("notifier: gateway publish failed", "subject", m.Subject, "err", err)
	}
}

func (n *Notifier) onGatewayRPC(m *nats.Msg, skip int) {
	if m.Reply == "" {
		n.stats.undecoded.Add(1)
		n.log.Warn("notifier: gateway rpc without reply subject", "subject", m.Subject)
		return
	}
	g, err := parseGateway(m.Subject, skip, m.Header, m.Data)
	if err != nil {
		n.stats.undecoded.Add(1)
		n.log.Warn("notifier: gateway rpc rejected", "subject", m.Subject, "err", err)
		n.gatewayReply(m.Reply, nil, err)
		return
	}
	if err := n.checkSize(g.body); err != nil {
		n.stats.rpcErrors.Add(1)
		n.log.Warn("notifier: gateway rpc refused", "subject", m.Subject, "err", err)
		n.gatewayReply(m.Reply, nil, err)
		return
	}
	n.mu.RLock()
	defer n.mu.RUnlock()
	if n.closed {
		return
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		results, err := n.rpc.do(context.Background(), time.Now().Add(n.o.rpcTimeout), g.object, g.id, g.cmd, g.body, g.json)
		n.gatewayReply(m.Reply, results, err)
	}()
}

// gatewayReply answers a gateway RPC with JSON. A reply the server would
// refuse (over its max payload) is replaced by an error reply saying so,
// counted in Stats().RPCErrors and logged, so the caller never waits out its
// timeout for an answer that cannot be sent.
func (n *Notifier) gatewayReply(subject string, results []Result, err error) {
	r := GatewayReply{Results: make([]GatewayResult, 0, len(results))}
	for _, res := range results {
		var g GatewayResult
		var re *RemoteError
		switch {
		case errors.As(res.Err, &re):
			g.Error = re
		case res.Err != nil:
			g.Error = &RemoteError{Code: CodeInternal, Message: res.Err.Error()}
		default:
			v := res.Value
			g.Value = &v
		}
		r.Results = append(r.Results, g)
	}
	if err != nil {
		r.Error = err.Error()
	}
	data, merr := marshalJSON(&r)
	if merr != nil {
		n.stats.rpcErrors.Add(1)
		n.log.Warn("notifier: gateway reply cannot be encoded as JSON", "err", merr)
		data, _ = marshalJSON(&GatewayReply{Results: []GatewayResult{}, Error: "notifier: cannot encode results as JSON: " + merr.Error()})
	}
	msg := nats.NewMsg(subject)
	msg.Header.Set("Content-Type", ContentTypeJSON)
	msg.Data = data
	perr := n.nc.PublishMsg(msg)
	if errors.Is(perr, nats.ErrMaxPayload) {
		n.stats.rpcErrors.Add(1)
		n.log.Warn("notifier: gateway reply too large, sent an error instead", "bytes", len(data), "max_payload", n.nc.MaxPayload())
		msg.Data, _ = marshalJSON(&GatewayReply{Results: []GatewayResult{}, Error: fmt.Sprintf(
			"%s: the JSON reply holding %d results is %d bytes, the server accepts %d",
			ErrPayloadTooLarge, len(results), len(data), n.nc.MaxPayload())})
		perr = n.nc.PublishMsg(msg)
	}
	if perr != nil {
		n.log.Warn("notifier: gateway reply failed", "err", perr)
	}
}
