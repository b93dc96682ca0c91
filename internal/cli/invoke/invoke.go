// Package invoke is `mecha invoke`: it calls a method of a running app the
// way another app would, through a sidecar's service invocation API
// (ANY /v1.0/invoke/{appId}/method/{method}). By default that is the
// target's own sidecar, found in the host's name resolution registry as
// `dapr invoke` finds it among daprd processes; --dapr-http-port picks the
// sidecar to go through instead, which exercises the sidecar-to-sidecar hop.
// The response body goes to stdout untouched, so it can be piped; the status
// and errors go to stderr, and a non-2xx answer is a failure.
package invoke

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/mecha-dev/mecha/internal/cli/list"
)

// Request is one invocation.
type Request struct {
	AppID  string
	Method string // may hold a path and a query string: "orders/7?verbose=1"
	Verb   string // default POST, as the dapr CLI
	Body   []byte
	Header http.Header
	// HTTPPort is the sidecar to go through; 0 finds the target's own.
	HTTPPort int
}

// Command returns `mecha invoke`.
func Command() *cobra.Command {
	var (
		req      Request
		data     string
		dataFile string
		headers  []string
		timeout  time.Duration
	)
	cmd := &cobra.Command{
		Use:   "invoke --app-id ID --method METHOD [--verb VERB] [--data DATA | --data-file FILE] [--header K=V]...",
		Short: "Call a method of a running app through a sidecar",
		Long: `Call METHOD of the app ID through service invocation, as another app would:
by default through the app's own sidecar (found among the running sidecars, see
mecha list), or through the sidecar listening on --dapr-http-port. The response
body is printed to stdout; the status and errors go to stderr, and a status
other than 2xx makes mecha exit 1.`,
		Example: `  mecha invoke --app-id greeter --method greet --data Ada
  mecha invoke -a orders -m orders/7 --verb GET --header accept=application/json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if data != "" && dataFile != "" {
				return errors.New("only one of --data and --data-file is allowed")
			}
			switch {
			case dataFile != "":
				b, err := os.ReadFile(dataFile)
				if err != nil {
					return fmt.Errorf("--data-file: %w", err)
				}
				req.Body = b
			case data != "":
				req.Body = []byte(data)
			}
			h, err := parseHeaders(headers)
			if err != nil {
				return err
			}
			req.Header = h
			ctx := cmd.Context()
			if timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, timeout)
				defer cancel()
			}
			return Run(ctx, req, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	fs := cmd.Flags()
	fs.StringVarP(&req.AppID, "app-id", "a", "", "the app to call (required)")
	fs.StringVarP(&req.Method, "method", "m", "", "the method to call, e.g. orders/7?verbose=1 (required)")
	fs.StringVarP(&req.Verb, "verb", "v", http.MethodPost, "the HTTP verb")
	fs.StringVarP(&data, "data", "d", "", "the request body")
	fs.StringVarP(&dataFile, "data-file", "f", "", "a file holding the request body")
	fs.StringArrayVarP(&headers, "header", "H", nil, "a request header as key=value (repeatable)")
	fs.IntVar(&req.HTTPPort, "dapr-http-port", 0, "go through the sidecar on this HTTP port instead of the app's own")
	fs.DurationVar(&timeout, "timeout", time.Minute, "give up after this long (0: never)")
	_ = cmd.MarkFlagRequired("app-id")
	_ = cmd.MarkFlagRequired("method")
	return cmd
}

func parseHeaders(kvs []string) (http.Header, error) {
	h := http.Header{}
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" || strings.ContainsAny(k, " \t:\r\n") {
			return nil, fmt.Errorf("--header %q: want key=value", kv)
		}
		h.Add(k, v)
	}
	return h, nil
}

// Run performs the invocation: the response body to stdout, the outcome to
// stderr. A non-2xx status is an error naming it (and Dapr's errorCode when
// the sidecar answered with one).
func Run(ctx context.Context, r Request, stdout, stderr io.Writer) error {
	if r.AppID == "" || strings.TrimSpace(r.Method) == "" {
		return errors.New("--app-id and --method are required")
	}
	verb := strings.ToUpper(r.Verb)
	if verb == "" || strings.ContainsAny(verb, " \t\r\n/()<>@,;:\\\"[]?={}") {
		return fmt.Errorf("--verb %q is not an HTTP method", r.Verb)
	}
	port := r.HTTPPort
	if port < 0 || port > 65535 {
		return fmt.Errorf("--dapr-http-port %d is not a valid port", port)
	}
	if port == 0 {
		var err error
		if port, err = list.HTTPPort(ctx, r.AppID, "to call it through another sidecar"); err != nil {
			return err
		}
	}
	target := "http://127.0.0.1:" + strconv.Itoa(port) + "/v1.0/invoke/" + url.PathEscape(r.AppID) + "/method/" + strings.TrimPrefix(r.Method, "/")
	if _, err := url.Parse(target); err != nil {
		return fmt.Errorf("--method %q: %w", r.Method, err)
	}
	var body io.Reader
	if len(r.Body) > 0 {
		body = bytes.NewReader(r.Body)
	}
	req, err := http.NewRequestWithContext(ctx, verb, target, body)
	if err != nil {
		return fmt.Errorf("--method %q: %w", r.Method, err)
	}
	for k, vs := range r.Header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	if len(r.Body) > 0 && req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/json") // as the dapr CLI sends
	}
	if tok := os.Getenv("DAPR_API_TOKEN"); tok != "" && req.Header.Get("dapr-api-token") == "" {
		req.Header.Set("dapr-api-token", tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("calling %s through the sidecar on port %d: %w", r.AppID, port, err)
	}
	defer resp.Body.Close()
	var head [4 << 10]byte // the start of the body, to find a Dapr error in
	n, _ := io.ReadFull(resp.Body, head[:])
	out := &lastByte{w: stdout}
	if _, err := out.Write(head[:n]); err != nil {
		return err
	}
	if _, err := io.Copy(out, resp.Body); err != nil {
		return fmt.Errorf("reading the answer of %s: %w", r.AppID, err)
	}
	if out.last != 0 && out.last != '\n' && isTerminal(stdout) {
		fmt.Fprintln(stdout) // keep the prompt on its own line
	}
	if resp.StatusCode/100 != 2 {
		msg := fmt.Sprintf("%s answered %s", r.AppID, resp.Status)
		var de struct {
			ErrorCode string `json:"errorCode"`
			Message   string `json:"message"`
		}
		if json.Unmarshal(head[:n], &de) == nil && de.ErrorCode != "" {
			msg += fmt.Sprintf(" (%s: %s)", de.ErrorCode, de.Message)
		}
		return errors.New(msg)
	}
	fmt.Fprintf(stderr, "app %s invoked successfully: %s\n", r.AppID, resp.Status)
	return nil
}

// lastByte remembers the last byte written through it.
type lastByte struct {
	w    io.Writer
	last byte
}

func (l *lastByte) Write(p []byte) (int, error) {
	if len(p) > 0 {
		l.last = p[len(p)-1]
	}
	return l.w.Write(p)
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
