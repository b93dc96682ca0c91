//go:build !k8s

package controlplane

import (
	"errors"

	"github.com/spf13/cobra"

	"github.com/mecha-dev/mecha/internal/sentry"
)

// kubernetes is the validator's Kubernetes API access; this binary was
// built without client-go (-tags k8s, see components/secretstores/kubernetes:
// it doubles the binary), so asking for the validator is an error and it
// is otherwise off.
func (s *sentryFlags) kubernetes(cmd *cobra.Command, local bool) (*sentry.KubernetesOptions, error) {
	if s.kubeconfig != "" || (cmd.Flags().Changed("kubernetes-validator") && s.kubeValidator) {
		return nil, errors.New("the Kubernetes validator needs a mecha built with -tags k8s")
	}
	return nil, nil
}
