// Package publish is `mecha publish`: it publishes one event through a
// sidecar's pub/sub API (POST /v1.0/publish/{pubsub}/{topic}), as an app
// would and as `dapr publish` does. The sidecar is the one on
// --dapr-http-port, or the sidecar of --app-id found in the host's name
// resolution registry (see mecha list).
package publish

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

	"github.com/mecha-dev/mecha/internal/cli/list"
)

// Request is one event to publish.
type Request struct {
	PubsubName string
	Topic      string
	Data       []byte
	// ContentType defaults to application/json when Data is JSON and
	// text/plain otherwise.
	ContentType string
	// Metadata become metadata.<k> query parameters (rawPayload,
	// ttlInSeconds, cloudevent.*, broker keys).
	Metadata map[string]string
	// HTTPPort is the sidecar to publish through; 0 finds AppID's.
	HTTPPort int
	AppID    string
}

// Command returns `mecha publish`.
func Command() *cobra.Command {
	var (
		req      Request
		data     string
		dataFile string
		md       []string
		timeout  time.Duration
	)
	cmd := &cobra.Command{
		Use:   "publish --pubsub P --topic T [--data DATA | --data-file FILE] [--metadata K=V]... (--app-id ID | --dapr-http-port PORT)",
		Short: "Publish an event through a sidecar's pub/sub API",
		Long: `Publish DATA to TOPIC on the pub/sub component P through a running sidecar:
the one of the app ID (found among the running sidecars, see mecha list), or
the one listening on --dapr-http-port. The sidecar wraps the data in a
CloudEvent with the app as its source, unless --metadata rawPayload=true.
Errors go to stderr and make mecha exit 1.`,
		Example: `  mecha publish --app-id orders --pubsub pubsub --topic new-orders --data '{"id": 7}'
  mecha publish --dapr-http-port 3500 --pubsub pubsub --topic logs --data hello --metadata ttlInSeconds=60`,
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
				req.Data = b
			case data != "":
				req.Data = []byte(data)
			}
			m, err := parseMetadata(md)
			if err != nil {
				return err
			}
			req.Metadata = m
			ctx := cmd.Context()
			if timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, timeout)
				defer cancel()
			}
			return Run(ctx, req, cmd.ErrOrStderr())
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&req.PubsubName, "pubsub", "", "the pub/sub component (required)")
	fs.StringVarP(&req.Topic, "topic", "t", "", "the topic (required)")
	fs.StringVarP(&data, "data", "d", "", "the event data")
	fs.StringVarP(&dataFile, "data-file", "f", "", "a file holding the event data")
	fs.StringVar(&req.ContentType, "content-type", "", "the data's content type (default application/json for JSON data, else text/plain)")
	fs.StringArrayVarP(&md, "metadata", "m", nil, "request metadata as key=value (repeatable), e.g. rawPayload=true, ttlInSeconds=60")
	fs.StringVarP(&req.AppID, "app-id", "a", "", "publish through the sidecar of this app (as its source)")
	fs.StringVar(&req.AppID, "publish-app-id", "", "alias of --app-id, as the dapr CLI spells it")
	fs.IntVar(&req.HTTPPort, "dapr-http-port", 0, "publish through the sidecar on this HTTP port")
	fs.DurationVar(&timeout, "timeout", time.Minute, "give up after this long (0: never)")
	_ = fs.MarkHidden("publish-app-id")
	_ = cmd.MarkFlagRequired("pubsub")
	_ = cmd.MarkFlagRequired("topic")
	return cmd
}

func parseMetadata(kvs []string) (map[string]string, error) {
	md := map[string]string{}
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, fmt.Errorf("--metadata %q: want key=value", kv)
		}
		md[k] = v
	}
	return md, nil
}

// Run publishes and reports the outcome on stderr; a refused publish is an
// error naming the status and Dapr's errorCode.
func Run(ctx context.Context, r Request, stderr io.Writer) error {
	if strings.TrimSpace(r.PubsubName) == "" || strings.TrimSpace(r.Topic) == "" {
		return errors.New("--pubsub and --topic are required")
	}
	port := r.HTTPPort
	switch {
	case port < 0 || port > 65535:
		return fmt.Errorf("--dapr-http-port %d is not a valid port", port)
	case port == 0 && r.AppID == "":
		return errors.New("give --app-id (publish through that app's sidecar) or --dapr-http-port")
	case port == 0:
		var err error
		if port, err = list.HTTPPort(ctx, r.AppID, "to publish through another sidecar"); err != nil {
			return err
		}
	}
	q := url.Values{}
	for k, v := range r.Metadata {
		q.Set("metadata."+k, v)
	}
	target := "http://127.0.0.1:" + strconv.Itoa(port) + "/v1.0/publish/" + url.PathEscape(r.PubsubName) + "/" + escapeTopic(r.Topic)
	if len(q) > 0 {
		target += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(r.Data))
	if err != nil {
		return err
	}
	ct := r.ContentType
	if ct == "" {
		ct = "text/plain"
		if len(r.Data) > 0 && json.Valid(r.Data) {
			ct = "application/json"
		}
	}
	req.Header.Set("Content-Type", ct)
	if tok := os.Getenv("DAPR_API_TOKEN"); tok != "" {
		req.Header.Set("dapr-api-token", tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("publishing through the sidecar on port %d: %w", port, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		msg := fmt.Sprintf("publish to %s/%s failed: %s", r.PubsubName, r.Topic, resp.Status)
		var de struct {
			ErrorCode string `json:"errorCode"`
			Message   string `json:"message"`
		}
		if json.Unmarshal(body, &de) == nil && de.ErrorCode != "" {
			msg += fmt.Sprintf(" (%s: %s)", de.ErrorCode, de.Message)
		}
		return errors.New(msg)
	}
	fmt.Fprintf(stderr, "event published to %s/%s\n", r.PubsubName, r.Topic)
	return nil
}

// escapeTopic escapes each segment of a topic, keeping its slashes.
func escapeTopic(topic string) string {
	parts := strings.Split(topic, "/")
	for i, p := range parts {
		parts[i] = url.PathEscape(p)
	}
	return strings.Join(parts, "/")
}
