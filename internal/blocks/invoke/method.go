package invoke

import (
	"fmt"
	"path"
	"strings"
)

// NormalizeMethod validates and cleans a method name (a decoded path without
// the leading slash) as daprd does before access control and dispatch: it
// rejects '#', '?', NUL and control characters, and resolves "." and ".."
// so that no path traversal reaches the app.
func NormalizeMethod(method string) (string, error) {
	if strings.ContainsAny(method, "#?") {
		return "", fmt.Errorf("%w: method contains forbidden character: %q", ErrInvalidMethod, method)
	}
	for i := 0; i < len(method); i++ {
		if c := method[i]; c < 0x20 || c == 0x7f {
			return "", fmt.Errorf("%w: method contains control character at position %d: %q", ErrInvalidMethod, i, method)
		}
	}
	if method == "" || !needsClean(method) {
		return method, nil
	}
	cleaned := path.Clean(method)
	for strings.HasPrefix(cleaned, "../") {
		cleaned = cleaned[3:]
	}
	switch cleaned {
	case ".", "..":
		cleaned = ""
	}
	return cleaned, nil
}

// needsClean reports whether path.Clean would change method (the common
// case, "orders/42", needs no allocation).
func needsClean(m string) bool {
	if strings.Contains(m, "//") || strings.HasSuffix(m, "/") || strings.HasPrefix(m, "/") {
		return true
	}
	for seg := range strings.SplitSeq(m, "/") {
		if seg == "." || seg == ".." {
			return true
		}
	}
	return false
}
