package main

import (
	"context"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"sync"
)

// eventCounts counts the library's log lines by message and reason (a
// "reason" or "why" attribute, node names left out), for the progress lines: "peer dropped" and "table fetch timed out" tell a
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
	return fmt.Sprintf("%d peer drops, %d fetches, %d fetch timeouts logged", c.count("peer dropped"), c.count("table fetch:"), c.count("fetch timed out"))
}

// detail lists every count, by message and reason.
func (c *eventCounts) detail() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	keys := make([]string, 0, len(c.counts))
	for k := range c.counts {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "\n    %7d  %s", c.counts[k], k)
	}
	return b.String()
}

type countingHandler struct {
	c     *eventCounts
	next  slog.Handler
	level slog.Level
}

func (h *countingHandler) Enabled(context.Context, slog.Level) bool { return true }

// byNode matches the node a reason names ("reported gone by n12").
var byNode = regexp.MustCompile(` by \S+?(,|$)`)

func (h *countingHandler) Handle(ctx context.Context, r slog.Record) error {
	key := r.Message
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "reason" || a.Key == "why" {
			key += ": " + byNode.ReplaceAllString(a.Value.String(), "")
			return false
		}
		return true
	})
	h.c.mu.Lock()
	h.c.counts[key]++
	h.c.mu.Unlock()
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
