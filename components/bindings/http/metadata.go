package http

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/mecha-dev/mecha/components"
)

// defaultMaxResponseBodySize is Dapr's limit on the response body read.
const defaultMaxResponseBodySize = 100 << 20

// settings is the decoded component metadata (Dapr's names, matched
// case-insensitively).
type settings struct {
	// URL is url, the base every request goes to; the request metadata
	// "path" is appended. Required, http or https.
	URL string
	// ResponseTimeout is responseTimeout: a bound on each request (default:
	// none beyond the caller's).
	ResponseTimeout time.Duration
	// ErrorIfNot2XX is errorIfNot2XX (default true): a non-2xx answer is
	// an error. Requests may override it with the same metadata key.
	ErrorIfNot2XX bool
	// SecurityToken is sent in the header SecurityTokenHeader when both
	// are set.
	SecurityToken, SecurityTokenHeader string
	// MaxResponseBodySize is maxResponseBodySize: bytes read from a
	// response body (default 100Mi; <= 0 means no limit). Accepts a plain
	// number of bytes or a quantity such as "10Mi".
	MaxResponseBodySize int64
	// TLS holds mtlsRootCA, mtlsClientCert and mtlsClientKey (PEM text or
	// a file path) and mtlsRenegotiation.
	TLS *tls.Config
}

func parseSettings(md components.Metadata) (settings, error) {
	var errs []error
	fail := func(name, format string, args ...any) {
		errs = append(errs, fmt.Errorf("metadata %q: %s", name, fmt.Sprintf(format, args...)))
	}
	s := settings{ErrorIfNot2XX: true, MaxResponseBodySize: defaultMaxResponseBodySize}

	s.URL = strings.TrimSpace(md.String("url", ""))
	if s.URL == "" {
		fail("url", "is required")
	} else if u, err := url.Parse(s.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		fail("url", "%q is not an http:// or https:// URL", s.URL)
	}
	var err error
	if s.ResponseTimeout, err = md.Duration("responseTimeout", time.Millisecond, 0); err != nil {
		errs = append(errs, err)
	} else if s.ResponseTimeout < 0 {
		fail("responseTimeout", "must not be negative")
	}
	if s.ErrorIfNot2XX, err = md.Bool("errorIfNot2XX", true); err != nil {
		errs = append(errs, err)
	}
	s.SecurityToken = md.String("securityToken", "")
	s.SecurityTokenHeader = md.String("securityTokenHeader", "")
	if (s.SecurityToken == "") != (s.SecurityTokenHeader == "") {
		fail("securityToken", "securityToken and securityTokenHeader must be set together")
	}
	if v := md.String("maxResponseBodySize", ""); v != "" {
		if s.MaxResponseBodySize, err = parseByteSize(v); err != nil {
			fail("maxResponseBodySize", "%v", err)
		}
	}
	if s.TLS, err = tlsConfig(md); err != nil {
		errs = append(errs, err)
	}
	return s, errors.Join(errs...)
}

// parseByteSize reads "1048576", "512Ki", "10Mi", "1Gi", "10M" or "1G".
func parseByteSize(v string) (int64, error) {
	v = strings.TrimSpace(v)
	units := []struct {
		suffix string
		mult   int64
	}{{"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}, {"k", 1e3}, {"K", 1e3}, {"M", 1e6}, {"G", 1e9}}
	mult := int64(1)
	for _, u := range units {
		if n, ok := strings.CutSuffix(v, u.suffix); ok {
			v, mult = n, u.mult
			break
		}
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a size (bytes, or a number with Ki, Mi, Gi)", v)
	}
	return n * mult, nil
}

// tlsConfig builds the client TLS settings from the mtls* metadata.
func tlsConfig(md components.Metadata) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if ca := md.String("mtlsRootCA", ""); ca != "" {
		pemBytes, err := pemOrFile("mtlsRootCA", ca)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pemBytes) {
			return nil, errors.New(`metadata "mtlsRootCA": no certificate found`)
		}
		cfg.RootCAs = pool
	}
	cert, key := md.String("mtlsClientCert", ""), md.String("mtlsClientKey", "")
	switch {
	case cert == "" && key == "":
	case cert == "" || key == "":
		return nil, errors.New(`metadata "mtlsClientCert": mtlsClientCert and mtlsClientKey must be set together`)
	default:
		c, err := pemOrFile("mtlsClientCert", cert)
		if err != nil {
			return nil, err
		}
		k, err := pemOrFile("mtlsClientKey", key)
		if err != nil {
			return nil, err
		}
		pair, err := tls.X509KeyPair(c, k)
		if err != nil {
			return nil, fmt.Errorf(`metadata "mtlsClientCert": %w`, err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	switch r := md.String("mtlsRenegotiation", ""); r {
	case "":
	case "RenegotiateNever":
		cfg.Renegotiation = tls.RenegotiateNever
	case "RenegotiateOnceAsClient":
		cfg.Renegotiation = tls.RenegotiateOnceAsClient
	case "RenegotiateFreelyAsClient":
		cfg.Renegotiation = tls.RenegotiateFreelyAsClient
	default:
		return nil, fmt.Errorf(`metadata "mtlsRenegotiation": %q is not RenegotiateNever, RenegotiateOnceAsClient or RenegotiateFreelyAsClient`, r)
	}
	return cfg, nil
}

// pemOrFile returns v when it is PEM text, else the content of the file v.
func pemOrFile(name, v string) ([]byte, error) {
	if b, _ := pem.Decode([]byte(v)); b != nil {
		return []byte(v), nil
	}
	b, err := os.ReadFile(v)
	if err != nil {
		return nil, fmt.Errorf("metadata %q is neither PEM text nor a readable file: %w", name, err)
	}
	return b, nil
}
