package notifier

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sync"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/natsnotifier/notifier/internal/wire"
)

// Args is an encoded payload: what Publish and RPC were given, as the
// receiver sees it. The zero Args is nil arguments.
type Args struct {
	data []byte
	json bool // JSON from a NATS client outside the library; else msgpack
}

// msgpackNil is the encoding of nil, used for an empty body.
var msgpackNil = []byte{0xc0}

// Decode decodes the payload into v, a pointer, as encoding/json or msgpack
// would. Empty arguments decode as nil. Msgpack is checked first (see
// checkBody): a container header claiming more elements or bytes than the
// payload holds, nesting deeper than 10,000 levels, or bytes after the value
// make an error wrapping ErrDecode, so decoding costs memory in proportion
// to the payload's size whatever its bytes claim.
func (a Args) Decode(v any) error {
	var err error
	switch {
	case len(a.data) == 0:
		err = msgpack.Unmarshal(msgpackNil, v)
	case a.json:
		err = json.Unmarshal(a.data, v)
	default:
		err = wire.Unmarshal(a.data, v)
	}
	if err != nil {
		return fmt.Errorf("%w: %w", ErrDecode, err)
	}
	return nil
}

// Raw returns the encoded bytes (msgpack, or JSON when IsJSON). Do not modify them.
func (a Args) Raw() []byte { return a.data }

// IsJSON reports whether the payload came from outside the library as JSON.
func (a Args) IsJSON() bool { return a.json }

// String renders the payload as JSON text, for logs.
func (a Args) String() string {
	if a.json {
		return string(a.data)
	}
	var v any
	if err := a.Decode(&v); err != nil {
		return fmt.Sprintf("<undecodable %d bytes>", len(a.data))
	}
	b, err := marshalJSON(jsonSafe(v))
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// jsonSafe converts msgpack's map[any]any, which encoding/json rejects.
func jsonSafe(v any) any {
	switch x := v.(type) {
	case map[any]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[fmt.Sprint(k)] = jsonSafe(e)
		}
		return m
	case map[string]any:
		for k, e := range x {
			x[k] = jsonSafe(e)
		}
	case []any:
		for i, e := range x {
			x[i] = jsonSafe(e)
		}
	}
	return v
}

// MarshalJSON renders the payload as JSON.
func (a Args) MarshalJSON() ([]byte, error) {
	if len(a.data) == 0 {
		return []byte("null"), nil
	}
	if a.json {
		return a.data, nil
	}
	var v any
	if err := a.Decode(&v); err != nil {
		return nil, err
	}
	return marshalJSON(jsonSafe(v))
}

// marshalJSON is json.Marshal without HTML escaping: text like "<prefix>"
// reaches a terminal as it is, not as \u003cprefix\u003e.
func marshalJSON(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// checkBody checks a payload that came from NATS before anything keeps it:
// JSON must be valid JSON, msgpack exactly one value whose every length fits
// in the bytes (wire.Check). Empty is nil arguments in either codec.
func checkBody(body []byte, isJSON bool) error {
	switch {
	case len(body) == 0:
		return nil
	case isJSON:
		if !json.Valid(body) {
			return fmt.Errorf("%w: body is not valid JSON", ErrDecode)
		}
	default:
		if err := wire.Check(body); err != nil {
			return fmt.Errorf("%w: %w", ErrDecode, err)
		}
	}
	return nil
}

// Result is one responder's answer to an RPC.
type Result struct {
	Value Args  // the responder's return value
	Err   error // non-nil (a *RemoteError) when the responder failed
}

// Decode returns r.Err if set, else decodes Value into v.
func (r Result) Decode(v any) error {
	if r.Err != nil {
		return r.Err
	}
	return r.Value.Decode(v)
}

// encoders are reused between calls to avoid allocating one per message.
var encoders = sync.Pool{New: func() any {
	e := &encoder{}
	e.enc = msgpack.NewEncoder(&e.buf)
	return e
}}

type encoder struct {
	buf bytes.Buffer
	enc *msgpack.Encoder
}

// encodeArgs returns the payload of args and whether it is JSON. An Args
// value passes through as it is. The bytes are valid until release.
func encodeArgs(args any) (*encoder, []byte, bool, error) {
	if a, ok := args.(Args); ok {
		return nil, a.data, a.json, nil
	}
	e := encoders.Get().(*encoder)
	e.buf.Reset()
	if err := e.enc.Encode(args); err != nil {
		encoders.Put(e)
		return nil, nil, false, fmt.Errorf("%w: %w", ErrEncode, err)
	}
	return e, e.buf.Bytes(), false, nil
}

func (e *encoder) release() {
	if e != nil && e.buf.Cap() <= 64<<10 {
		encoders.Put(e)
	}
}
