//go:build !k8s

package all

import "github.com/mecha-dev/mecha/components/kinds"

// registerKubernetesSecretStore is a no-op in builds tagged nok8s, which
// leave out client-go.
func registerKubernetesSecretStore(*kinds.Registries) {}
