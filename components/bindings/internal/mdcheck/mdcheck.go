// Package mdcheck warns about component metadata a binding does not read.
// Dapr users' manifests often carry properties for other versions or
// components, so an unknown name is a warning, not an error; but a typo
// ("schedual") deserves a visible hint.
package mdcheck

import (
	"log/slog"
	"strings"

	"github.com/mecha-dev/mecha/components"
)

// runtimeKeys are read by the runtime for every binding.
var runtimeKeys = []string{"direction", "route"}

// WarnUnknown logs one warning per property of md whose name is neither in
// known nor a runtime key (case-insensitive).
func WarnUnknown(log *slog.Logger, md components.Metadata, known ...string) {
	for name := range md.Properties {
		if !contains(known, name) && !contains(runtimeKeys, name) {
			log.Warn("ignoring unknown metadata property", "property", name)
		}
	}
}

func contains(list []string, name string) bool {
	for _, k := range list {
		if strings.EqualFold(k, name) {
			return true
		}
	}
	return false
}
