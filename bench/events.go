package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
)

// eventCounts counts the library's log lines of Info and above by message,
// for the progress lines: "peer dropped" and "table fetch timed out" tell a
// storm of false drops from a merely slow bus.
type eventCounts struct {
	mu     sync.Mutex
	counts map[string]int
}

func newEventCounts() *eventCounts { return &eventCounts{counts: make(map[string]int)} }

// handler counts every line and passes those at level or above to next
// (nil: count only).
func (c *eventCounts) handler(next slog.Handler, level slog.Level) slog.Handler {
	return &countingHandler{c: c, next: next, level: level}
}

// count returns how many lines had a message containing part.
func (c *eventCounts) count(part string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for m, k := range c.counts {
		if strings.Contains(m, part) {
			n += k
		}
	}
	return n
}

// summary is the progress lines' part: drops and fetch timeouts so far.
func (c *eventCounts) summary() string {
	return fmt.Sprintf("%d peer drops, %d fetch timeouts logged", c.count("peer dropped"), c.count("fetch timed out"))
}

type countingHandler struct {
	c     *eventCounts
	next  slog.Handler
	level slog.Level
}

func (h *countingHandler) Enabled(_ context.Context, l slog.Level) bool {
	return l >= slog.LevelInfo || (h.next != nil && l >= h.level)
}

func (h *countingHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelInfo {
		h.c.mu.Lock()
		h.c.counts[r.Message]++
		h.c.mu.Unlock()
	}
	if h.next != nil && r.Level >= h.level {
		return h.next.Handle(ctx, r)
	}
	return nil
}

func (h *countingHandler) WithAttrs(as []slog.Attr) slog.Handler {
	if h.next == nil {
		return h
	}
	return &countingHandler{c: h.c, next: h.next.WithAttrs(as), level: h.level}
}

func (h *countingHandler) WithGroup(name string) slog.Handler {
	if h.next == nil {
		return h
	}
	return &countingHandler{c: h.c, next: h.next.WithGroup(name), level: h.level}
}
