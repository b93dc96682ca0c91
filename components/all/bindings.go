package all

import "github.com/mecha-dev/mecha/components/kinds"

func registerBindings(r *kinds.Registries) {}
