//go:build k8s

package sentry

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"strings"
	"time"

	sentryv1 "github.com/dapr/dapr/pkg/proto/sentry/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	authv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/mecha-dev/mecha/internal/security/spiffe"
)

// Kubernetes identity proof (Dapr's KUBERNETES validator): the sidecar
// sends its pod's projected service-account token; the CA asks the API
// server to review it (TokenReview) and derives the identity from the pod
// the token was issued for, never from the request alone.
const (
	// LegacyKubernetesAudience is the audience daprd's tokens carried
	// before 1.13; newer ones carry the CA's SPIFFE ID. Both are accepted,
	// as by Dapr's sentry.
	LegacyKubernetesAudience = "dapr.io/sentry"
	// Pod annotations Dapr's injector sets.
	annotationAppID        = "dapr.io/app-id"
	annotationConfig       = "dapr.io/config"
	annotationControlPlane = "dapr.io/control-plane"
	// extraPodName and extraPodUID are the TokenReview's extra fields of a
	// pod-bound token.
	extraPodName = "authentication.kubernetes.io/pod-name"
	extraPodUID  = "authentication.kubernetes.io/pod-uid"
	// kubeTimeout bounds the API calls of one request.
	kubeTimeout = 10 * time.Second
)

// configurationsGVR is Dapr's Configuration resource, read for the trust
// domain of a pod annotated with dapr.io/config.
var configurationsGVR = schema.GroupVersionResource{Group: "dapr.io", Version: "v1alpha1", Resource: "configurations"}

// KubernetesOptions enable the KUBERNETES validator.
type KubernetesOptions struct {
	// Client reviews tokens and reads pods. Required.
	Client kubernetes.Interface
	// Dynamic reads Dapr Configuration resources (dapr.io/v1alpha1) for
	// the trust domain of pods annotated with dapr.io/config. When nil,
	// such pods are refused: their trust domain cannot be known.
	Dynamic dynamic.Interface
}

// kubeIdentity checks a KUBERNETES request and returns the identity to
// issue: the namespace of the token's service account, which must be the
// request's; the app id of the pod the token was issued for (its
// dapr.io/app-id annotation, else its name), which must be the request's;
// the trust domain of the pod's Configuration, else "public". A pod
// annotated dapr.io/control-plane in the control plane's namespace gets
// dapr-<service> in the control plane's trust domain. Every refusal is
// PermissionDenied, as Dapr's sentry answers a failed validation.
func (s *Server) kubeIdentity(ctx context.Context, req *sentryv1.SignCertificateRequest) (spiffe.ID, error) {
	k := s.opts.Kubernetes
	if k == nil || k.Client == nil {
		return spiffe.ID{}, status.Error(codes.InvalidArgument, "the requested validator is not enabled")
	}
	// The request's own shape first (app id, namespace), as for tokens.
	if err := checkRequest(req); err != nil {
		return spiffe.ID{}, err
	}
	deny := func(format string, args ...any) (spiffe.ID, error) {
		return spiffe.ID{}, status.Errorf(codes.PermissionDenied, format, args...)
	}
	token := strings.TrimSpace(req.GetToken())
	if token == "" {
		return deny("no service account token in the request")
	}
	ctx, cancel := context.WithTimeout(ctx, kubeTimeout)
	defer cancel()
	review, err := k.Client.AuthenticationV1().TokenReviews().Create(ctx, &authv1.TokenReview{
		Spec: authv1.TokenReviewSpec{Token: token, Audiences: []string{LegacyKubernetesAudience, s.id.String()}},
	}, metav1.CreateOptions{})
	if err != nil {
		s.log.Warn("Kubernetes token review failed", "error", err)
		return deny("token review failed")
	}
	switch {
	case review.Status.Error != "":
		return deny("invalid token: %s", review.Status.Error)
	case !review.Status.Authenticated:
		return deny("authentication failed")
	}
	parts := strings.Split(review.Status.User.Username, ":")
	if len(parts) != 4 || parts[0] != "system" || parts[1] != "serviceaccount" || parts[2] == "" || parts[3] == "" {
		return deny("provided token is not a properly structured service account token")
	}
	saNamespace, saName := parts[2], parts[3]
	podName, podUID := extraValue(review.Status.User.Extra, extraPodName), extraValue(review.Status.User.Extra, extraPodUID)
	if podName == "" {
		podName = tokenPodName(token)
	}
	if podName == "" {
		return deny("the token is not bound to a pod (no pod name in the token review or the token's kubernetes.io claim)")
	}
	if saNamespace != req.GetNamespace() {
		return deny("namespace mismatch; received namespace: %s", req.GetNamespace())
	}
	pod, err := k.Client.CoreV1().Pods(saNamespace).Get(ctx, podName, metav1.GetOptions{})
	if err != nil {
		s.log.Warn("reading the pod of a certificate request failed", "namespace", saNamespace, "pod", podName, "error", err)
		return deny("failed to get pod of identity")
	}
	if podUID != "" && string(pod.UID) != podUID {
		return deny("the token was issued for another pod named %s", podName)
	}
	podSA := pod.Spec.ServiceAccountName
	if podSA == "" {
		podSA = "default"
	}
	if podSA != saName {
		return deny("pod service account mismatch")
	}
	ann := pod.Annotations
	if svc, ok := ann[annotationControlPlane]; ok {
		switch {
		case saNamespace != s.opts.Namespace:
			return deny("control plane service in namespace '%s' is not allowed", saNamespace)
		case !controlPlaneService(svc):
			return deny("unknown control plane service '%s'", svc)
		case ann[annotationAppID] != "":
			return deny("control plane service '%s' cannot have annotation '%s'", pod.Name, annotationAppID)
		}
		if want := "dapr-" + svc; want != req.GetId() {
			return deny("app-id mismatch. expected: %s, received: %s", want, req.GetId())
		}
		return spiffe.New(s.opts.TrustDomain, saNamespace, req.GetId())
	}
	want := ann[annotationAppID]
	if want == "" {
		want = pod.Name
	}
	if want != req.GetId() {
		return deny("app-id mismatch. expected: %s, received: %s", want, req.GetId())
	}
	td := spiffe.DefaultTrustDomain
	if name := ann[annotationConfig]; name != "" {
		if td, err = s.configTrustDomain(ctx, saNamespace, name); err != nil {
			return spiffe.ID{}, err
		}
	}
	if td == s.opts.TrustDomain {
		return deny("trust domain %q is the control plane's; workloads cannot be issued identities in it", td)
	}
	id, err := spiffe.New(td, saNamespace, want)
	if err != nil {
		return deny("invalid identity: %v", err)
	}
	return id, nil
}

// configTrustDomain is spec.accessControl.trustDomain of the pod's
// Configuration, "public" when unset.
func (s *Server) configTrustDomain(ctx context.Context, namespace, name string) (string, error) {
	dyn := s.opts.Kubernetes.Dynamic
	if dyn == nil {
		return "", status.Errorf(codes.PermissionDenied, "failed to get configuration %q: Configuration resources are not readable", name)
	}
	obj, err := dyn.Resource(configurationsGVR).Namespace(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		s.log.Warn("reading a pod's Configuration failed", "namespace", namespace, "configuration", name, "error", err)
		return "", status.Error(codes.PermissionDenied, "failed to get configuration")
	}
	td, _, _ := unstructured.NestedString(obj.Object, "spec", "accessControl", "trustDomain")
	if td == "" {
		return spiffe.DefaultTrustDomain, nil
	}
	if err := spiffe.ValidTrustDomain(td); err != nil {
		return "", status.Errorf(codes.PermissionDenied, "failed to parse trust domain %q: %v", td, err)
	}
	return td, nil
}

func extraValue(extra map[string]authv1.ExtraValue, key string) string {
	if v := extra[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// tokenPodName reads the pod name from the claims of a token the API
// server has just authenticated (older API servers put it in the token
// only, not in the review's extra); the signature was checked by the
// review, so it is not checked again.
func tokenPodName(token string) string {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return ""
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return ""
	}
	var claims struct {
		Kubernetes struct {
			Pod struct {
				Name string `json:"name"`
			} `json:"pod"`
		} `json:"kubernetes.io"`
	}
	if json.Unmarshal(payload, &claims) != nil {
		return ""
	}
	return claims.Kubernetes.Pod.Name
}
