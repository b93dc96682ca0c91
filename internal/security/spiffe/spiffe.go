// Package spiffe is the workload identity Mecha's CA issues and its
// sidecars check: a SPIFFE ID of Dapr's form
// spiffe://{trustDomain}/ns/{namespace}/{appId}, carried as the only URI
// SAN of an X.509 certificate.
//
// Parsing is strict, so that two spellings of one identity cannot both
// pass (a policy written for one would miss the other): lower-case trust
// domain of [a-z0-9.-_], no port, user info, query, fragment or
// percent-encoding, and exactly the three path segments.
package spiffe

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// DefaultTrustDomain is the trust domain of app identities when none is
// configured: Dapr's default for Configuration spec.accessControl.
const DefaultTrustDomain = "public"

// ID is a parsed app identity.
type ID struct {
	TrustDomain string
	Namespace   string
	AppID       string
}

// New returns the identity after checking each part.
func New(trustDomain, namespace, appID string) (ID, error) {
	id := ID{TrustDomain: trustDomain, Namespace: namespace, AppID: appID}
	if err := ValidTrustDomain(trustDomain); err != nil {
		return ID{}, err
	}
	if err := validSegment("namespace", namespace); err != nil {
		return ID{}, err
	}
	if err := validSegment("app id", appID); err != nil {
		return ID{}, err
	}
	return id, nil
}

// String is the SPIFFE ID, spiffe://td/ns/ns/app.
func (id ID) String() string {
	return "spiffe://" + id.TrustDomain + "/ns/" + id.Namespace + "/" + id.AppID
}

// URL is the SPIFFE ID as the URI SAN of a certificate.
func (id ID) URL() *url.URL {
	return &url.URL{Scheme: "spiffe", Host: id.TrustDomain, Path: "/ns/" + id.Namespace + "/" + id.AppID}
}

// IsZero reports whether id is the zero ID.
func (id ID) IsZero() bool { return id == ID{} }

// Parse parses spiffe://td/ns/ns/app.
func Parse(s string) (ID, error) {
	rest, ok := strings.CutPrefix(s, "spiffe://")
	if !ok {
		return ID{}, fmt.Errorf("%q is not a spiffe:// URI", s)
	}
	td, path, ok := strings.Cut(rest, "/")
	if !ok {
		return ID{}, fmt.Errorf("SPIFFE ID %q has no path", s)
	}
	parts := strings.Split(path, "/")
	if len(parts) != 3 || parts[0] != "ns" {
		return ID{}, fmt.Errorf("SPIFFE ID %q is not of the form spiffe://<trust domain>/ns/<namespace>/<app id>", s)
	}
	id, err := New(td, parts[1], parts[2])
	if err != nil {
		return ID{}, fmt.Errorf("SPIFFE ID %q: %w", s, err)
	}
	return id, nil
}

// FromURIs returns the identity of a certificate's URI SANs: exactly one,
// a valid SPIFFE ID, as the SPIFFE X.509-SVID specification requires.
func FromURIs(uris []*url.URL) (ID, error) {
	if len(uris) != 1 {
		return ID{}, fmt.Errorf("the certificate has %d URI SANs, want exactly one SPIFFE ID", len(uris))
	}
	u := uris[0]
	if u.Scheme != "spiffe" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" || u.RawPath != "" || u.Port() != "" {
		return ID{}, fmt.Errorf("URI SAN %q is not a SPIFFE ID", u.String())
	}
	return Parse(u.String())
}

// FromCertificate returns the identity of cert (see FromURIs).
func FromCertificate(cert *x509.Certificate) (ID, error) {
	if cert == nil {
		return ID{}, errors.New("no certificate")
	}
	return FromURIs(cert.URIs)
}

// ValidTrustDomain checks a trust domain name: 1 to 255 characters of
// lower-case letters, digits, '.', '-' and '_'.
func ValidTrustDomain(td string) error {
	if td == "" {
		return errors.New("the trust domain is empty")
	}
	if len(td) > 255 {
		return errors.New("the trust domain is longer than 255 characters")
	}
	for i := 0; i < len(td); i++ {
		c := td[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return fmt.Errorf("trust domain %q: only lower-case letters, digits, '.', '-' and '_' are allowed", td)
		}
	}
	return nil
}

// validSegment checks one path segment: SPIFFE's path characters
// [A-Za-z0-9.-_], neither "." nor "..".
func validSegment(what, s string) error {
	if s == "" {
		return fmt.Errorf("the %s is empty", what)
	}
	if s == "." || s == ".." {
		return fmt.Errorf("the %s %q is not allowed", what, s)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return fmt.Errorf("%s %q: only letters, digits, '.', '-' and '_' are allowed", what, s)
		}
	}
	return nil
}
