//go:build k8s

package controlplane

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/mecha-dev/mecha/internal/sentry"
)

// kubernetes is the Kubernetes API access of the validator: from
// --kubeconfig; else, with --kubernetes-validator, the pod's service
// account or $KUBECONFIG; else, without --local, the pod's service account
// when running in one; nil when off.
func (s *sentryFlags) kubernetes(cmd *cobra.Command, local bool) (*sentry.KubernetesOptions, error) {
	explicit := cmd.Flags().Changed("kubernetes-validator")
	var cfg *rest.Config
	var err error
	switch {
	case explicit && !s.kubeValidator:
		return nil, nil
	case s.kubeconfig != "":
		cfg, err = clientcmd.BuildConfigFromFlags("", s.kubeconfig)
	case explicit:
		cfg, err = rest.InClusterConfig()
		if errors.Is(err, rest.ErrNotInCluster) && os.Getenv("KUBECONFIG") != "" {
			cfg, err = clientcmd.BuildConfigFromFlags("", os.Getenv("KUBECONFIG"))
		}
	case local:
		return nil, nil
	default:
		cfg, err = rest.InClusterConfig()
		if errors.Is(err, rest.ErrNotInCluster) {
			return nil, nil
		}
	}
	if err != nil {
		return nil, fmt.Errorf("the Kubernetes validator: %w", err)
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("the Kubernetes validator: %w", err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("the Kubernetes validator: %w", err)
	}
	return &sentry.KubernetesOptions{Client: client, Dynamic: dyn}, nil
}
