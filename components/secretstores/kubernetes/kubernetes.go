// Package kubernetes is the secretstores.kubernetes component: Kubernetes
// Secrets as secrets, each with all the keys of its data. It is the one
// package of the sidecar that links client-go; nothing else may import it
// or k8s.io, so builds without it (components/all's nok8s tag) shed the
// whole dependency tree.
//
// A secret is read from the namespace named by, in order: the request's
// metadata "namespace", the component's metadata "defaultNamespace", the
// NAMESPACE environment variable, else "default". The client is built in
// Init, from metadata kubeconfigPath when set, otherwise from the in-cluster
// service account.
package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/mecha-dev/mecha/components"
	"github.com/mecha-dev/mecha/components/secretstores"
)

// Store is the Kubernetes secret store.
type Store struct {
	log              *slog.Logger
	defaultNamespace string

	mu     sync.RWMutex
	client kubernetes.Interface
	// injected is true when the client came from NewWithClient: Init then
	// keeps it instead of building one.
	injected bool
}

var _ secretstores.Store = (*Store)(nil)

// New returns an uninitialised store whose client is built in Init.
func New(deps components.Deps) secretstores.Store {
	log := deps.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Store{log: log}
}

// NewWithClient returns an uninitialised store that uses client (for tests,
// with k8s.io/client-go/kubernetes/fake, and for embedders that already
// hold a clientset).
func NewWithClient(client kubernetes.Interface) secretstores.Store {
	return &Store{log: slog.New(slog.DiscardHandler), client: client, injected: true}
}

// Init reads the metadata and builds the client.
func (s *Store) Init(_ context.Context, md components.Metadata) error {
	s.defaultNamespace = md.String("defaultNamespace", "")
	if s.injected {
		return nil
	}
	cfg, err := restConfig(md.String("kubeconfigPath", ""))
	if err != nil {
		return err
	}
	// client-go's default client-side limit (5 requests/s, bursts of 10)
	// would queue an app's secret reads behind each other; use kubectl's
	// order of magnitude instead and leave fairness to the API server.
	cfg.QPS, cfg.Burst = 50, 100
	cfg.UserAgent = "mecha-secretstores-kubernetes"
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("creating the Kubernetes client: %w", err)
	}
	s.mu.Lock()
	s.client = cs
	s.mu.Unlock()
	return nil
}

func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig != "" {
		cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("metadata kubeconfigPath: %w", err)
		}
		return cfg, nil
	}
	cfg, err := rest.InClusterConfig()
	if err != nil {
		return nil, fmt.Errorf("not running in a Kubernetes cluster and metadata kubeconfigPath is not set: %w", err)
	}
	return cfg, nil
}

// Features declares multi-valued secrets: a Kubernetes Secret holds any
// number of keys.
func (s *Store) Features() []secretstores.Feature {
	return []secretstores.Feature{secretstores.FeatureMultipleKeyValues}
}

// secretsIn returns the Secrets API of the namespace md selects.
func (s *Store) secretsIn(md map[string]string) (typedcorev1.SecretInterface, string, error) {
	s.mu.RLock()
	c := s.client
	s.mu.RUnlock()
	if c == nil {
		return nil, "", errors.New("the kubernetes secret store is not initialised")
	}
	ns := s.namespace(md)
	return c.CoreV1().Secrets(ns), ns, nil
}

// Get returns every key of the Secret name.
func (s *Store) Get(ctx context.Context, req secretstores.GetRequest) (map[string]string, error) {
	api, ns, err := s.secretsIn(req.Metadata)
	if err != nil {
		return nil, err
	}
	sec, err := api.Get(ctx, req.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("secret %s in namespace %s: %w", req.Name, ns, secretstores.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("reading secret %s in namespace %s: %w", req.Name, ns, err)
	}
	return dataOf(sec), nil
}

// BulkGet lists the Secrets of the namespace.
func (s *Store) BulkGet(ctx context.Context, req secretstores.BulkGetRequest) (map[string]map[string]string, error) {
	api, ns, err := s.secretsIn(req.Metadata)
	if err != nil {
		return nil, err
	}
	list, err := api.List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing secrets in namespace %s: %w", ns, err)
	}
	out := make(map[string]map[string]string, len(list.Items))
	for i := range list.Items {
		out[list.Items[i].Name] = dataOf(&list.Items[i])
	}
	return out, nil
}

func dataOf(sec *corev1.Secret) map[string]string {
	out := make(map[string]string, len(sec.Data))
	for k, v := range sec.Data {
		out[k] = string(v)
	}
	return out
}

func (s *Store) namespace(md map[string]string) string {
	if ns := md["namespace"]; ns != "" {
		return ns
	}
	if s.defaultNamespace != "" {
		return s.defaultNamespace
	}
	if ns := os.Getenv("NAMESPACE"); ns != "" {
		return ns
	}
	return "default"
}

// Close drops the client; it holds no goroutines of its own.
func (s *Store) Close() error {
	s.mu.Lock()
	if !s.injected {
		s.client = nil
	}
	s.mu.Unlock()
	return nil
}
