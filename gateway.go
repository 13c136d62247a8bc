package notifier

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
	return json.Marshal(struct {
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
	queue := n.subj.Prefix + ".gateway"
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

// gatewayArgs checks a message from outside: its address and its body.
func (n *Notifier) gatewayArgs(m *nats.Msg, skip int) (object, cmd string, id int64, body []byte, isJSON bool, err error) {
	object, cmd, id, ok := bus.ParseAddr(m.Subject[skip:])
	if !ok {
		return "", "", 0, nil, false, fmt.Errorf("%w: subject %q is not <prefix>.<pub|rpc>.<object>.<cmd>.<id>", ErrInvalidName, m.Subject)
	}
	ct := ""
	if m.Header != nil {
		ct = strings.ToLower(strings.TrimSpace(m.Header.Get("Content-Type")))
		if i := strings.IndexByte(ct, ';'); i >= 0 {
			ct = strings.TrimSpace(ct[:i])
		}
	}
	body = m.Data
	switch ct {
	case "", ContentTypeJSON:
		isJSON = true
		if len(body) > 0 && !json.Valid(body) {
			return "", "", 0, nil, false, fmt.Errorf("%w: body is not valid JSON", ErrDecode)
		}
	case ContentTypeMsgpack:
		if len(body) > 0 {
			if err := (Args{data: body}).Decode(new(any)); err != nil {
				return "", "", 0, nil, false, err
			}
		}
	default:
		return "", "", 0, nil, false, fmt.Errorf("%w: unsupported Content-Type %q", ErrDecode, ct)
	}
	if len(body) == 0 {
		isJSON = false // empty is nil args in either codec
	}
	return object, cmd, id, body, isJSON, nil
}

func (n *Notifier) onGatewayPub(m *nats.Msg, skip int) {
	object, cmd, id, body, isJSON, err := n.gatewayArgs(m, skip)
	if err != nil {
		n.stats.undecoded.Add(1)
		n.log.Warn("notifier: gateway publish rejected", "subject", m.Subject, "err", err)
		return
	}
	if err := n.publish(object, id, cmd, body, isJSON, true, false, 0); err != nil {
		n.log.Warn("notifier: gateway publish failed", "subject", m.Subject, "err", err)
	}
}

func (n *Notifier) onGatewayRPC(m *nats.Msg, skip int) {
	if m.Reply == "" {
		n.stats.undecoded.Add(1)
		n.log.Warn("notifier: gateway rpc without reply subject", "subject", m.Subject)
		return
	}
	object, cmd, id, body, isJSON, err := n.gatewayArgs(m, skip)
	if err != nil {
		n.stats.undecoded.Add(1)
		n.log.Warn("notifier: gateway rpc rejected", "subject", m.Subject, "err", err)
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
		results, err := n.rpc.do(context.Background(), time.Now().Add(n.o.rpcTimeout), object, id, cmd, body, isJSON)
		n.gatewayReply(m.Reply, results, err)
	}()
}

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
	data, merr := json.Marshal(&r)
	if merr != nil {
		data, _ = json.Marshal(&GatewayReply{Results: []GatewayResult{}, Error: "notifier: cannot encode results as JSON: " + merr.Error()})
	}
	msg := nats.NewMsg(subject)
	msg.Header.Set("Content-Type", ContentTypeJSON)
	msg.Data = data
	if err := n.nc.PublishMsg(msg); err != nil {
		n.log.Warn("notifier: gateway reply failed", "err", err)
	}
}
