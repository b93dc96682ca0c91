package run

import (
	"bytes"
	"io"
	"sync"
)

// lineWriter prefixes every line written to it and writes whole lines to an
// output shared with other lineWriters, so that the app's and the sidecar's
// logs interleave line by line, never mid-line.
type lineWriter struct {
	mu     *sync.Mutex // shared by all writers of one output
	out    io.Writer
	prefix []byte
	buf    []byte
}

func newLineWriter(mu *sync.Mutex, out io.Writer, prefix string) *lineWriter {
	return &lineWriter{mu: mu, out: out, prefix: []byte(prefix)}
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.emit(w.buf[:i+1])
		w.buf = w.buf[i+1:]
	}
	if len(w.buf) > 64<<10 { // an endless line: flush it in pieces
		w.emit(append(w.buf, '\n'))
		w.buf = w.buf[:0]
	}
	return len(p), nil
}

func (w *lineWriter) emit(line []byte) {
	w.mu.Lock()
	defer w.mu.Unlock()
	_, _ = w.out.Write(append(append([]byte(nil), w.prefix...), line...))
}

// Flush writes a trailing partial line.
func (w *lineWriter) Flush() {
	if len(w.buf) > 0 {
		w.emit(append(w.buf, '\n'))
		w.buf = nil
	}
}
