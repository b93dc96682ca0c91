//go:build k8s

package all

import (
	"github.com/mecha-dev/mecha/components/kinds"
	"github.com/mecha-dev/mecha/components/secretstores/kubernetes"
)

// registerKubernetesSecretStore adds secretstores.kubernetes, the only
// component that links client-go; build with -tags nok8s to leave it out.
func registerKubernetesSecretStore(r *kinds.Registries) {
	r.SecretStores.Register("secretstores.kubernetes", kubernetes.New)
}
