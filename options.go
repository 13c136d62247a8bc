package notifier

import (
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/natsnotifier/notifier/bus"
	"github.com/natsnotifier/notifier/internal/directory"
)

// Defaults of the options.
const (
	DefaultPrefix          = bus.DefaultPrefix
	DefaultHeartbeat       = directory.DefaultHeartbeat
	DefaultRPCTimeout      = 5 * time.Second
	DefaultQueueSize       = 65536
	DefaultConcurrency     = 64
	DefaultSyncTimeout     = directory.DefaultTimeout
	DefaultRegisterTimeout = 5 * time.Second
	DefaultCloseTimeout    = 30 * time.Second
)

// Option configures a Notifier in Connect or New.
type Option func(*options) error

type options struct {
	prefix          string
	logger          *slog.Logger
	heartbeat       time.Duration
	rpcTimeout      time.Duration
	queueSize       int
	concurrency     int
	syncTimeout     time.Duration
	registerTimeout time.Duration
	closeTimeout    time.Duration
	rand            func() float64
	natsOpts        []nats.Option
}

func defaultOptions() options {
	return options{
		prefix:       DefaultPrefix,
		logger:       slog.New(slog.DiscardHandler),
		heartbeat:    DefaultHeartbeat,
		rpcTimeout:   DefaultRPCTimeout,
		queueSize:    DefaultQueueSize,
		concurrency:  DefaultConcurrency,
		syncTimeout:  DefaultSyncTimeout,
		closeTimeout: DefaultCloseTimeout,
		rand:         rand.Float64,
	}
}

// ErrInvalidOption reports an option with a value out of range.
var ErrInvalidOption = errors.New("notifier: invalid option")

// WithPrefix sets the first subject token(s) of every subject the Notifier
// uses, so several independent buses can share one NATS system. Notifiers
// with different prefixes never see each other. Default "notifier".
func WithPrefix(prefix string) Option {
	return func(o *options) error {
		if !bus.ValidPrefix(prefix) {
			return fmt.Errorf("%w: prefix %q", ErrInvalidOption, prefix)
		}
		o.prefix = prefix
		return nil
	}
}

// WithLogger sets the structured logger. Default: silent.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) error {
		if l == nil {
			return fmt.Errorf("%w: nil logger", ErrInvalidOption)
		}
		o.logger = l
		return nil
	}
}

// WithHeartbeat sets how often a Notifier probes its two successors on the
// ring of Notifiers. A Notifier whose connection closes without a goodbye is
// dropped by all within one heartbeat, one that freezes within two.
// Default 1s.
func WithHeartbeat(d time.Duration) Option {
	return func(o *options) error {
		if d < time.Millisecond {
			return fmt.Errorf("%w: heartbeat %v", ErrInvalidOption, d)
		}
		o.heartbeat = d
		return nil
	}
}

// WithRPCTimeout sets the deadline of RPC, RPCs and RPCCall when ctx has
// none. Default 5s.
func WithRPCTimeout(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return fmt.Errorf("%w: rpc timeout %v", ErrInvalidOption, d)
		}
		o.rpcTimeout = d
		return nil
	}
}

// WithQueueSize bounds the notifications waiting for, or being delivered to,
// one registration's Subscriber; their payloads are also bounded to 64 MiB,
// as nats.go bounds a subscription's pending messages. Beyond, further
// notifications for it are dropped and counted in Stats (and logged).
// Default 65536.
func WithQueueSize(n int) Option {
	return func(o *options) error {
		if n < 1 {
			return fmt.Errorf("%w: queue size %d", ErrInvalidOption, n)
		}
		o.queueSize = n
		return nil
	}
}

// WithConcurrency bounds how many RPC handlers of this Notifier run at once.
// Default 64.
func WithConcurrency(n int) Option {
	return func(o *options) error {
		if n < 1 {
			return fmt.Errorf("%w: concurrency %d", ErrInvalidOption, n)
		}
		o.concurrency = n
		return nil
	}
}

// WithSyncTimeout bounds each directory request made while joining the bus
// (the member list, each member's table). Default 2s.
func WithSyncTimeout(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return fmt.Errorf("%w: sync timeout %v", ErrInvalidOption, d)
		}
		o.syncTimeout = d
		return nil
	}
}

// WithRegisterTimeout bounds how long a registration call waits for the other
// Notifiers to confirm it. A peer that dies meanwhile is dropped after its
// heartbeats stop, which ends the wait sooner. Default: 5s or five
// heartbeats, whichever is longer.
func WithRegisterTimeout(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return fmt.Errorf("%w: register timeout %v", ErrInvalidOption, d)
		}
		o.registerTimeout = d
		return nil
	}
}

// WithCloseTimeout bounds how long Close waits for running handlers and
// queued notifications. Default 30s.
func WithCloseTimeout(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return fmt.Errorf("%w: close timeout %v", ErrInvalidOption, d)
		}
		o.closeTimeout = d
		return nil
	}
}

// WithRandSource sets the random source of the weighted slice draw, for
// reproducible tests. Default: math/rand/v2's global generator.
func WithRandSource(src rand.Source) Option {
	return func(o *options) error {
		if src == nil {
			return fmt.Errorf("%w: nil rand source", ErrInvalidOption)
		}
		var mu sync.Mutex
		r := rand.New(src)
		o.rand = func() float64 {
			mu.Lock()
			defer mu.Unlock()
			return r.Float64()
		}
		return nil
	}
}

// WithNATSOptions adds options to the NATS connection made by Connect (New
// ignores them). Connect already sets a name, reconnects forever and logs
// connection events to the Notifier's logger; these come after and win.
func WithNATSOptions(opts ...nats.Option) Option {
	return func(o *options) error {
		o.natsOpts = append(o.natsOpts, opts...)
		return nil
	}
}

// randFunc adapts a float source to match.Rand.
type randFunc func() float64

func (f randFunc) Float64() float64 { return f() }
