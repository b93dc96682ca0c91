package all

import "github.com/mecha-dev/mecha/components/kinds"

func registerConfiguration(r *kinds.Registries) {}
