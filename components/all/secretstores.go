package all

import (
	"github.com/mecha-dev/mecha/components/kinds"
	"github.com/mecha-dev/mecha/components/secretstores/localenv"
	"github.com/mecha-dev/mecha/components/secretstores/localfile"
)

func registerSecretStores(r *kinds.Registries) {
	r.SecretStores.Register("secretstores.local.file", localfile.New)
	r.SecretStores.Register("secretstores.local.env", localenv.New)
	registerKubernetesSecretStore(r)
}
