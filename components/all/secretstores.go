package all

import "github.com/mecha-dev/mecha/components/kinds"

func registerSecretStores(r *kinds.Registries) {}
