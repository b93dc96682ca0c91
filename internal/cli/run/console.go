package run

import (
	"io"
	"os"
	"sync"

	"golang.org/x/term"
)

// console is the output every app and sidecar of one `mecha run` shares:
// line writers on it interleave whole lines, each prefixed with whose it is
// and, on a terminal, coloured per app.
type console struct {
	mu    sync.Mutex
	out   io.Writer
	color bool
}

func newConsole(out io.Writer) *console {
	return &console{out: out, color: isTerminal(out)}
}

// palette holds one ANSI colour per app, in template order; past its end it
// wraps around. The sidecar's lines use the app's colour, dimmed.
var palette = []string{"32", "36", "33", "35", "34", "92", "96", "93", "95", "94"}

// pair returns the writers for the app with the given index: its own output
// ("[id] ") and its sidecar's logs ("[id sidecar] ").
func (c *console) pair(appID string, index int) (app, side *lineWriter) {
	col := palette[index%len(palette)]
	app = newLineWriter(&c.mu, c.out, paint(c.color, col, "["+appID+"] "))
	side = newLineWriter(&c.mu, c.out, paint(c.color, "2;"+col, "["+appID+" sidecar] "))
	return app, side
}

// writer returns a writer for lines of mecha itself, e.g. "[mecha] ".
func (c *console) writer(prefix string) *lineWriter {
	return newLineWriter(&c.mu, c.out, paint(c.color, "1", prefix))
}

// isTerminal reports whether w is a terminal that may be coloured: not when
// NO_COLOR is set (https://no-color.org).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd())) && os.Getenv("NO_COLOR") == ""
}

func paint(on bool, code, s string) string {
	if !on {
		return s
	}
	return "\x1b[" + code + "m" + s + "\x1b[0m"
}
