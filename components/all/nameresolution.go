package all

import (
	"github.com/mecha-dev/mecha/components/kinds"
	"github.com/mecha-dev/mecha/components/nameresolution/sqlite"
)

func registerNameResolution(r *kinds.Registries) {
	r.NameResolution.Register("nameresolution.sqlite", sqlite.New)
}
