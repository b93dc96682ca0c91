package run

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
)

func TestLineWriter(t *testing.T) {
	cases := []struct {
		name   string
		writes []string
		flush  bool
		want   string
	}{
		{"one line", []string{"hello\n"}, false, "[p] hello\n"},
		{"two lines in one write", []string{"a\nb\n"}, false, "[p] a\n[p] b\n"},
		{"partial line waits", []string{"par", "tial"}, false, ""},
		{"partial line completed", []string{"par", "tial\nnext"}, false, "[p] partial\n"},
		{"flush ends a partial line", []string{"a\nb"}, true, "[p] a\n[p] b\n"},
		{"flush with nothing pending", []string{"a\n"}, true, "[p] a\n"},
		{"empty lines keep their prefix", []string{"\n\n"}, false, "[p] \n[p] \n"},
		{"byte by byte", strings.Split("x\ny\n", ""), false, "[p] x\n[p] y\n"},
		{"carriage returns pass through", []string{"a\r\n"}, false, "[p] a\r\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var out bytes.Buffer
			w := newLineWriter(&sync.Mutex{}, &out, "[p] ")
			for _, s := range c.writes {
				n, err := w.Write([]byte(s))
				if n != len(s) || err != nil {
					t.Fatalf("Write(%q) = %d, %v; want %d, nil", s, n, err, len(s))
				}
			}
			if c.flush {
				w.Flush()
				w.Flush() // a second Flush writes nothing more
			}
			if got := out.String(); got != c.want {
				t.Fatalf("output %q, want %q", got, c.want)
			}
		})
	}
}

func TestLineWriterDoesNotKeepCallerBuffer(t *testing.T) {
	var out bytes.Buffer
	w := newLineWriter(&sync.Mutex{}, &out, "> ")
	b := []byte("abc")
	w.Write(b)
	copy(b, "xyz") // callers may reuse their buffer after Write returns
	w.Write([]byte("\n"))
	if got := out.String(); got != "> abc\n" {
		t.Fatalf("output %q, want %q", got, "> abc\n")
	}
}

func TestLineWriterLongLine(t *testing.T) {
	var out bytes.Buffer
	w := newLineWriter(&sync.Mutex{}, &out, "[p] ")
	long := strings.Repeat("z", 100<<10)
	w.Write([]byte(long))
	// An endless line is not buffered forever: it goes out in pieces, each
	// one prefixed and newline-terminated.
	if out.Len() == 0 {
		t.Fatal("100 KiB without a newline are still buffered")
	}
	w.Write([]byte("\n"))
	w.Flush()
	var total int
	for line := range strings.Lines(out.String()) {
		if !strings.HasPrefix(line, "[p] ") || !strings.HasSuffix(line, "\n") {
			t.Fatalf("piece %.20q... is not a prefixed line", line)
		}
		total += len(line) - len("[p] ") - 1
	}
	if total != len(long) {
		t.Fatalf("pieces carry %d bytes, want %d", total, len(long))
	}
}

// TestLineWritersInterleaveByLine: writers sharing one output, each fed from
// its own goroutine in odd-sized chunks, never mix within a line.
func TestLineWritersInterleaveByLine(t *testing.T) {
	var out bytes.Buffer
	var mu sync.Mutex
	const writers, lines = 4, 300
	var wg sync.WaitGroup
	for i := range writers {
		w := newLineWriter(&mu, &out, fmt.Sprintf("[w%d] ", i))
		wg.Go(func() {
			var all strings.Builder
			for j := range lines {
				fmt.Fprintf(&all, "w%d line %d %s\n", i, j, strings.Repeat("-", j%37))
			}
			s := all.String()
			for chunk := 1; len(s) > 0; chunk = chunk%13 + 1 {
				n := min(chunk, len(s))
				w.Write([]byte(s[:n]))
				s = s[n:]
			}
			w.Flush()
		})
	}
	wg.Wait()

	next := make([]int, writers)
	got := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(got) != writers*lines {
		t.Fatalf("got %d lines, want %d", len(got), writers*lines)
	}
	for _, line := range got {
		var i, j int
		if _, err := fmt.Sscanf(line, "[w%d] w%d line %d", &i, new(int), &j); err != nil {
			t.Fatalf("mangled line %q: %v", line, err)
		}
		want := fmt.Sprintf("[w%d] w%d line %d %s", i, i, next[i], strings.Repeat("-", next[i]%37))
		if line != want {
			t.Fatalf("line %q, want %q", line, want)
		}
		next[i]++
	}
}
