package invokemsg

import (
	"encoding/base64"
	"net/http"
	"strings"

	internalv1 "github.com/dapr/dapr/pkg/proto/internals/v1"
	"golang.org/x/net/http/httpguts"
	"google.golang.org/grpc/metadata"
)

// Metadata keys the sidecars add or treat specially, as daprd names them.
const (
	CallerAppIDHeader     = "dapr-caller-app-id"
	CallerNamespaceHeader = "dapr-caller-namespace"
	CalleeAppIDHeader     = "dapr-callee-app-id"
	DestinationAppID      = "destination-app-id"
	AppIDHeader           = "dapr-app-id"
	APITokenHeader        = "dapr-api-token"
	HTTPStatusHeader      = "dapr-http-status"
	traceparent           = "traceparent"
	tracestate            = "tracestate"
	grpcTraceBin          = "grpc-trace-bin"
	baggage               = "baggage"
)

// FromHTTPHeader converts request or response headers; the value slices
// are shared, not copied.
func FromHTTPHeader(h http.Header) MD {
	md := make(MD, len(h))
	for k, v := range h {
		md[k] = &internalv1.ListStringValue{Values: v}
	}
	return md
}

// FromGRPC converts gRPC metadata; binary (-bin) values are base64-encoded,
// as internal metadata carries strings.
func FromGRPC(in metadata.MD) MD {
	md := make(MD, len(in))
	for k, v := range in {
		if strings.HasSuffix(k, "-bin") {
			enc := make([]string, len(v))
			for i, s := range v {
				enc[i] = base64.StdEncoding.EncodeToString([]byte(s))
			}
			v = enc
		}
		md[k] = &internalv1.ListStringValue{Values: v}
	}
	return md
}

// Set replaces key in md with one value.
func Set(md MD, key, value string) {
	md[key] = &internalv1.ListStringValue{Values: []string{value}}
}

// Append adds a value to key in md.
func Append(md MD, key, value string) {
	if l := md[key]; l != nil {
		l.Values = append(l.Values, value)
		return
	}
	Set(md, key, value)
}

// Get returns the first value of key (exact match, then any case).
func Get(md MD, key string) string {
	if l := md[key]; l != nil && len(l.GetValues()) > 0 {
		return l.GetValues()[0]
	}
	for k, l := range md {
		if strings.EqualFold(k, key) && len(l.GetValues()) > 0 {
			return l.GetValues()[0]
		}
	}
	return ""
}

// isHopByHop reports the headers a proxy must not forward (RFC 7230 §6.1),
// given in lower case.
func isHopByHop(k string) bool {
	switch k {
	case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade",
		"http2-settings", "te", "trailer", "proxy-authorization", "proxy-authenticate":
		return true
	}
	return false
}

// connectionTokens returns the headers the Connection header nominates as
// hop-by-hop, in lower case; nil when there are none.
func connectionTokens(md MD) map[string]bool {
	var out map[string]bool
	for k, l := range md {
		if !strings.EqualFold(k, "connection") {
			continue
		}
		for _, v := range l.GetValues() {
			for tok := range strings.SplitSeq(v, ",") {
				if tok = strings.ToLower(strings.TrimSpace(tok)); tok != "" {
					if out == nil {
						out = map[string]bool{}
					}
					out[tok] = true
				}
			}
		}
	}
	return out
}

// ToHTTPHeader adds md to h as an HTTP request to an app or a response to an
// HTTP caller carries it, with daprd's rules: hop-by-hop headers (also those
// the Connection header names), content-type and content-length (set from
// the message instead), binary gRPC metadata and destination-app-id are
// dropped; gRPC pseudo-headers and grpc-* keys get a "dapr-" prefix;
// traceparent/tracestate pass through together. Names or values that are
// not valid in HTTP are dropped rather than failing the call.
func ToHTTPHeader(md MD, h http.Header) {
	conn := connectionTokens(md)
	var tp, ts string
	for k, l := range md {
		vals := l.GetValues()
		if len(vals) == 0 {
			continue
		}
		key := strings.ToLower(k)
		switch key {
		case traceparent:
			tp = vals[0]
			continue
		case tracestate:
			ts = vals[0]
			continue
		case grpcTraceBin, DestinationAppID, "content-type", "content-length", "host":
			continue
		}
		if strings.HasSuffix(key, "-bin") || isHopByHop(key) || conn[key] {
			continue
		}
		switch {
		case key == ":method" || key == ":scheme" || key == ":path" || key == ":authority":
			k = "dapr-" + key[1:]
		case strings.HasPrefix(key, "grpc-"):
			k = "dapr-" + key
		}
		if !httpguts.ValidHeaderFieldName(k) {
			continue
		}
		ck := http.CanonicalHeaderKey(k)
		for _, v := range vals {
			if httpguts.ValidHeaderFieldValue(v) {
				h[ck] = append(h[ck], v)
			}
		}
	}
	if tp != "" && httpguts.ValidHeaderFieldValue(tp) {
		h["Traceparent"] = []string{tp}
		if ts != "" && httpguts.ValidHeaderFieldValue(ts) {
			h["Tracestate"] = []string{ts}
		}
	}
}

// isPermanentHTTPHeader reports the IANA permanent request headers daprd
// renames to "dapr-<name>" when it passes HTTP headers as gRPC metadata
// (HTTP/2 forbids some, and others would confuse a gRPC server).
func isPermanentHTTPHeader(k string) bool {
	switch k {
	case "Accept", "Accept-Charset", "Accept-Language", "Accept-Ranges", "Connection", "Keep-Alive",
		"Proxy-Connection", "Transfer-Encoding", "Upgrade", "Cache-Control", "Content-Type", "Content-Length",
		"Cookie", "Date", "Expect", "From", "Host", "If-Match", "If-Modified-Since", "If-None-Match",
		"If-Schedule-Tag-Match", "If-Unmodified-Since", "Max-Forwards", "Origin", "Pragma", "Referer", "Via", "Warning":
		return true
	}
	return false
}

// ToGRPC converts md to gRPC metadata for a gRPC app or a gRPC caller. With
// httpHeaders (metadata that came from HTTP headers), daprd's permanent HTTP
// headers are renamed "dapr-<name>". Binary values are decoded; keys or
// values gRPC would reject, and HTTP/2 connection headers, are dropped;
// destination-app-id stays internal; traceparent/tracestate pass through.
func ToGRPC(md MD, httpHeaders bool) metadata.MD {
	out := make(metadata.MD, len(md))
	var tp, ts string
	for k, l := range md {
		vals := l.GetValues()
		if len(vals) == 0 {
			continue
		}
		key := strings.ToLower(k)
		switch key {
		case traceparent:
			tp = vals[0]
			continue
		case tracestate:
			ts = vals[0]
			continue
		case grpcTraceBin, DestinationAppID:
			continue
		}
		if httpHeaders && isPermanentHTTPHeader(k) {
			key = "dapr-" + key
		} else if isHopByHop(key) || key == "content-length" || key == "host" {
			continue
		}
		if !validGRPCKey(key) {
			continue
		}
		if strings.HasSuffix(key, "-bin") {
			for _, v := range vals {
				if dec, err := base64.StdEncoding.DecodeString(v); err == nil {
					out[key] = append(out[key], string(dec))
				}
			}
			continue
		}
		for _, v := range vals {
			if validGRPCValue(v) {
				out[key] = append(out[key], v)
			}
		}
	}
	if tp != "" && validGRPCValue(tp) {
		out[traceparent] = []string{tp}
		if ts != "" && validGRPCValue(ts) {
			out[tracestate] = []string{ts}
		}
	}
	return out
}

func validGRPCKey(k string) bool {
	if k == "" || k[0] == ':' {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

func validGRPCValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if v[i] < 0x20 || v[i] > 0x7e {
			return false
		}
	}
	return true
}
