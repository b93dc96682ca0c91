package all

import "github.com/mecha-dev/mecha/components/kinds"

func registerLock(r *kinds.Registries) {}
