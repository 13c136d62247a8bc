package notifier

import (
	"context"
	"sync"
	"time"
)

// handlerCtx is the ctx an RPC handler gets: it carries the caller's
// deadline, and arms a timer only if the handler asks for Done. Most handlers
// never do, and context.WithTimeout would cost a timer per call.
type handlerCtx struct {
	deadline time.Time

	mu    sync.Mutex
	done  chan struct{} // made on the first Done
	timer *time.Timer
	err   error // set once done is closed, or the handler returned
}

var _ context.Context = (*handlerCtx)(nil)

func newHandlerCtx(timeout time.Duration) *handlerCtx {
	return &handlerCtx{deadline: time.Now().Add(timeout)}
}

func (c *handlerCtx) Deadline() (time.Time, bool) { return c.deadline, true }

func (c *handlerCtx) Value(any) any { return nil }

func (c *handlerCtx) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done == nil {
		c.done = make(chan struct{})
		switch d := time.Until(c.deadline); {
		case c.err != nil:
			close(c.done)
		case d <= 0:
			c.err = context.DeadlineExceeded
			close(c.done)
		default:
			c.timer = time.AfterFunc(d, func() { c.end(context.DeadlineExceeded) })
		}
	}
	return c.done
}

func (c *handlerCtx) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil && !time.Now().Before(c.deadline) {
		c.err = context.DeadlineExceeded
		if c.done != nil {
			close(c.done)
		}
	}
	return c.err
}

// end closes the context with err unless it is closed already.
func (c *handlerCtx) end(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return
	}
	c.err = err
	if c.timer != nil {
		c.timer.Stop()
	}
	if c.done != nil {
		close(c.done)
	}
}

// cancel ends the context once the handler returned.
func (c *handlerCtx) cancel() { c.end(context.Canceled) }
