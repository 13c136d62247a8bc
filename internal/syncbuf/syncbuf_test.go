package syncbuf

import (
	"bytes"
	"strings"
	"sync"
	"testing"
)

// TestConcurrentWrites: lines written from many goroutines arrive whole,
// through a Buffer and through a Writer (run under -race).
func TestConcurrentWrites(t *testing.T) {
	var b Buffer
	var under bytes.Buffer
	w := &Writer{W: &under}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				_, _ = b.Write([]byte("line\n"))
				_, _ = w.Write([]byte("line\n"))
			}
		})
	}
	wg.Wait()
	for name, s := range map[string]string{"Buffer": b.String(), "Writer": under.String()} {
		if got := strings.Count(s, "line\n"); got != 800 || len(s) != 800*len("line\n") {
			t.Errorf("%s: %d whole lines in %d bytes, want 800", name, got, len(s))
		}
	}
}
