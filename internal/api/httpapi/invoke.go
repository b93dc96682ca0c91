package httpapi

import (
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"path"
	"strconv"
	"strings"

	commonv1 "github.com/dapr/dapr/pkg/proto/common/v1"
	internalv1 "github.com/dapr/dapr/pkg/proto/internals/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/mecha-dev/mecha/internal/apierr"
	"github.com/mecha-dev/mecha/internal/invokemsg"
)

const invokePrefix = "/v1.0/invoke/"

// isInvoke reports whether r is a service invocation that must bypass the
// router: the URL form (whose method may hold anything a path can), and
// the header form on a path the router would redirect to its clean form.
func isInvoke(r *http.Request) bool {
	p := r.URL.Path
	if strings.HasPrefix(p, invokePrefix) {
		return true
	}
	if _, ok := r.Header[http.CanonicalHeaderKey(invokemsg.AppIDHeader)]; ok {
		return path.Clean(p) != p
	}
	return false
}

// invokeTarget finds the target app id and method, as daprd does, from:
// the dapr-app-id header (the whole path is the method), Basic auth with
// user "dapr-app-id", or the path /v1.0/invoke/{appId}/method/{method...}.
func invokeTarget(r *http.Request) (target, method string) {
	if id := r.Header.Get(invokemsg.AppIDHeader); id != "" {
		return id, strings.TrimPrefix(path.Clean(r.URL.Path), "/")
	}
	if auth := r.Header.Get("Authorization"); strings.HasPrefix(auth, "Basic ") {
		if b, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(auth, "Basic ")); err == nil {
			user, id, ok := strings.Cut(string(b), ":")
			if ok && !strings.Contains(id, ":") && strings.EqualFold(user, invokemsg.AppIDHeader) {
				return id, strings.TrimPrefix(path.Clean(r.URL.Path), "/")
			}
		}
	}
	rest, ok := strings.CutPrefix(r.URL.Path, invokePrefix)
	if !ok {
		return "", ""
	}
	rest = strings.TrimLeft(rest, "/")
	if i := strings.Index(rest, "/method/"); i > 0 {
		m := path.Clean(rest[i+len("/method/"):])
		if m == "." {
			m = ""
		}
		return rest[:i], strings.TrimPrefix(m, "/")
	}
	if id, ok := strings.CutSuffix(rest, "/method"); ok && id != "" {
		return id, "" // "/method/" whose trailing slash the middleware trimmed
	}
	return "", ""
}

// invoke serves every form of service invocation: the request (verb, path,
// query, headers, body) goes to the target app and its answer (status,
// headers, body) comes back verbatim, both streamed.
func (a *api) invoke(w http.ResponseWriter, r *http.Request) {
	target, method := invokeTarget(r)
	if target == "" {
		apierr.WriteHTTP(w, apierr.DirectInvokeNoAppID.New("failed getting app id either from the URL path or the header dapr-app-id"))
		return
	}
	if a.Invoke == nil {
		apierr.WriteHTTP(w, apierr.DirectInvoke.New("invoke API is not ready"))
		return
	}
	h := r.Header
	delete(h, "Dapr-App-Id")
	delete(h, "Dapr-Api-Token")
	md := invokemsg.FromHTTPHeader(h)
	var body io.Reader
	if r.ContentLength != 0 {
		body = r.Body
	} else if _, ok := h["Content-Length"]; !ok {
		// Tell the callee there is no body, so the app's request has none.
		invokemsg.Set(md, "Content-Length", "0")
	}
	verb, ok := commonv1.HTTPExtension_Verb_value[strings.ToUpper(r.Method)]
	if !ok {
		verb = int32(commonv1.HTTPExtension_POST) // as daprd
	}
	req := &invokemsg.Request{
		Message: &commonv1.InvokeRequest{
			Method:        method,
			ContentType:   h.Get("Content-Type"),
			HttpExtension: &commonv1.HTTPExtension{Verb: commonv1.HTTPExtension_Verb(verb), Querystring: r.URL.RawQuery},
		},
		Metadata:      md,
		Body:          body,
		ContentLength: r.ContentLength,
	}
	resp, err := a.Invoke.Invoke(r.Context(), target, req)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			apierr.WriteHTTP(w, tooLarge(mbe.Limit))
			return
		}
		apierr.WriteHTTP(w, err)
		return
	}
	defer resp.Close()
	a.writeInvokeResponse(w, r, target, resp)
}

// writeInvokeResponse writes the app's answer. An HTTP app's status,
// headers and body pass through; a gRPC app's error becomes the mapped HTTP
// status with the JSON google.rpc.Status as body, as in daprd.
func (a *api) writeInvokeResponse(w http.ResponseWriter, r *http.Request, target string, resp *invokemsg.Response) {
	hdr := w.Header()
	invokemsg.ToHTTPHeader(resp.Headers, hdr)
	code := int(resp.Status.GetCode())
	if !resp.IsHTTP() {
		code = invokemsg.HTTPStatusFromCode(codes.Code(code))
		if code != http.StatusOK {
			b, err := protojson.Marshal(resp.Status)
			if err != nil {
				// Details of a type this binary does not know cannot be
				// rendered as JSON; the code and message still can.
				b, err = protojson.Marshal(&internalv1.Status{Code: resp.Status.GetCode(), Message: resp.Status.GetMessage()})
			}
			if err != nil {
				apierr.WriteHTTP(w, apierr.DirectInvoke.Wrap(err, "failed to invoke, id: %s, err", target))
				return
			}
			hdr["Content-Type"] = jsonContentType
			hdr["Content-Length"] = []string{strconv.Itoa(len(b))}
			w.WriteHeader(code)
			_, _ = w.Write(b)
			return
		}
	} else if code < 200 || code > 999 {
		for k := range hdr {
			delete(hdr, k)
		}
		apierr.WriteHTTP(w, apierr.DirectInvoke.New("failed to invoke, id: %s, err: the app answered with status %d, which cannot be relayed", target, code))
		return
	}
	switch {
	case resp.DataTypeURL != "":
		// A protobuf Any from a gRPC app, as daprd labels it.
		hdr["Content-Type"] = []string{invokemsg.ProtobufContentType}
	case resp.ContentType != "":
		hdr["Content-Type"] = []string{resp.ContentType}
	}
	known := resp.ContentLength >= 0
	if known {
		hdr["Content-Length"] = []string{strconv.FormatInt(resp.ContentLength, 10)}
	}
	w.WriteHeader(code)
	// Not w itself: its ReadFrom hands the copy to the connection, which
	// allocates a 32 KiB buffer per call.
	var dst io.Writer = writerOnly{w}
	if !known {
		// An unknown length may be a stream (server-sent events…):
		// deliver each chunk as it arrives.
		if f, ok := w.(http.Flusher); ok {
			dst = flushWriter{w, f}
		}
	}
	bufp := invokemsg.GetBuffer()
	_, err := io.CopyBuffer(dst, resp.Body, *bufp)
	invokemsg.PutBuffer(bufp)
	if err != nil && r.Context().Err() == nil {
		// The status is out already; cut the connection so the client
		// sees a truncated body rather than a complete short one.
		a.Logger.Warn("service invocation failed while streaming the response", "app_id", target, "error", err)
		panic(http.ErrAbortHandler)
	}
}

type writerOnly struct{ io.Writer }

type flushWriter struct {
	w http.ResponseWriter
	f http.Flusher
}

func (fw flushWriter) Write(p []byte) (int, error) {
	n, err := fw.w.Write(p)
	if n > 0 {
		fw.f.Flush()
	}
	return n, err
}
