package actors

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/mecha-dev/mecha/internal/channel"
	"github.com/mecha-dev/mecha/internal/invokemsg"
)

// App is the part of the app channel the actor runtime uses: HTTP requests
// to an HTTP app. Dapr's AppCallback gRPC service has no actor methods
// (1.18 adds the app-initiated SubscribeActorEventsAlpha1 stream instead),
// so actors are hosted by HTTP apps only.
type App interface {
	// WaitReady blocks until the app can take calls.
	WaitReady(ctx context.Context) error
	// Do sends a request; the caller closes the response body.
	Do(ctx context.Context, method, path string, header http.Header, body io.Reader) (*http.Response, error)
}

// HTTPApp adapts the sidecar's app channel; nil when the app is not an
// HTTP app (or there is none).
func HTTPApp(a *channel.App) App {
	if a == nil || a.HTTP == nil {
		return nil
	}
	return channelApp{a}
}

type channelApp struct{ a *channel.App }

func (c channelApp) WaitReady(ctx context.Context) error { return c.a.WaitReady(ctx) }

func (c channelApp) Do(ctx context.Context, method, path string, header http.Header, body io.Reader) (*http.Response, error) {
	if !c.a.Healthy() {
		return nil, channel.ErrAppUnhealthy
	}
	return c.a.HTTP.Do(ctx, method, path, header, body)
}

// Headers the actor protocol gives meaning to.
const (
	ReentrancyHeader     = "Dapr-Reentrancy-Id"
	ReminderCancelHeader = "X-Daprremindercancel"
	ErrorResponseHeader  = "X-Daprerrorresponseheader"
)

// appStatusError is an app that answered a callback with a status other
// than 200; the message is daprd's.
type appStatusError struct {
	status int
	body   string
	// method is set for a method the app does not know (404).
	method string
}

func (e *appStatusError) Error() string {
	if e.method != "" {
		return "actor method not found: " + e.method
	}
	return fmt.Sprintf("error from actor service: (%d) %s", e.status, e.body)
}

// actorPath is the app path of an actor callback; each segment is escaped
// so that ids with "/" or "%" reach the app as one segment.
func actorPath(typ, id string, rest ...string) string {
	var b strings.Builder
	b.WriteString("/actors/")
	b.WriteString(url.PathEscape(typ))
	b.WriteByte('/')
	b.WriteString(url.PathEscape(id))
	for _, r := range rest {
		b.WriteByte('/')
		b.WriteString(r)
	}
	return b.String()
}

// escapeMethod escapes each "/"-separated segment of a method name.
func escapeMethod(m string) string {
	parts := strings.Split(m, "/")
	for i, p := range parts {
		parts[i] = url.PathEscape(p)
	}
	return strings.Join(parts, "/")
}

// appResponse is an app's answer to an actor method.
func (b *Block) callApp(ctx context.Context, method, path string, header http.Header, body []byte) (*InvokeResponse, error) {
	if b.app == nil {
		return nil, errNoApp
	}
	var rd io.Reader
	if len(body) > 0 {
		rd = bytes.NewReader(body)
	}
	resp, err := b.app.Do(ctx, method, path, header, rd)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := invokemsg.ReadAll(resp.Body, resp.ContentLength, b.maxBody)
	if err != nil {
		return nil, fmt.Errorf("reading the app's response: %w", err)
	}
	return &InvokeResponse{
		Status:      resp.StatusCode,
		Headers:     invokemsg.FromHTTPHeader(resp.Header),
		ContentType: resp.Header.Get("Content-Type"),
		Data:        data,
	}, nil
}

var errNoApp = errors.New("the actor runtime has no HTTP app channel")

// invokeApp calls PUT /actors/{type}/{id}/method/{method} (always PUT, as
// daprd) with the caller's headers. A status other than 200 is an error;
// 200 with X-DaprErrorResponseHeader is an actor error the caller gets as
// is.
func (b *Block) invokeApp(ctx context.Context, req *InvokeRequest, rid string) (*InvokeResponse, error) {
	h := make(http.Header, len(req.Metadata)+2)
	invokemsg.ToHTTPHeader(req.Metadata, h)
	h.Del(invokemsg.APITokenHeader)
	h.Del(remoteHeader)
	if req.ContentType != "" {
		h.Set("Content-Type", req.ContentType)
	}
	if rid != "" {
		h.Set(ReentrancyHeader, rid)
	} else {
		h.Del(ReentrancyHeader)
	}
	path := actorPath(req.ActorType, req.ActorID, "method", escapeMethod(req.Method))
	resp, err := b.callApp(ctx, http.MethodPut, path, h, req.Data)
	if err != nil {
		return nil, err
	}
	if resp.Status != http.StatusOK {
		if resp.Status == http.StatusNotFound {
			return nil, &appStatusError{status: resp.Status, method: strings.TrimPrefix(path, "/")}
		}
		return nil, &appStatusError{status: resp.Status, body: string(resp.Data)}
	}
	return resp, nil
}

// callbackBody is the JSON of a reminder or timer callback.
type callbackBody struct {
	Data     json.RawMessage `json:"data,omitempty"`
	Callback *string         `json:"callback,omitempty"`
	DueTime  string          `json:"dueTime"`
	Period   string          `json:"period"`
}

// fireApp calls PUT /actors/{type}/{id}/method/{kind}/{name} with the
// callback body. cancel reports the app's X-DaprReminderCancel: true.
func (b *Block) fireApp(ctx context.Context, typ, id, kind, name string, body callbackBody, rid string) (cancel bool, err error) {
	defer func() {
		if kind == "timer" {
			b.mx.ActorTimerFired(typ, err == nil)
		} else {
			b.mx.ActorReminderFired(typ, err == nil)
		}
	}()
	data, err := json.Marshal(body)
	if err != nil {
		return false, err
	}
	h := http.Header{"Content-Type": {"application/json"}}
	if rid != "" {
		h.Set(ReentrancyHeader, rid)
	}
	path := actorPath(typ, id, "method", kind, url.PathEscape(name))
	var resp *InvokeResponse
	err = b.postLock(ctx, typ, id, func(ctx context.Context) (err error) {
		resp, err = b.callApp(ctx, http.MethodPut, path, h, data)
		return err
	})
	if err != nil {
		return false, err
	}
	cancel = strings.EqualFold(strings.TrimSpace(invokemsg.Get(resp.Headers, ReminderCancelHeader)), "true")
	if resp.Status != http.StatusOK {
		return cancel, &appStatusError{status: resp.Status, body: string(resp.Data)}
	}
	return cancel, nil
}

// deactivateApp tells the app an actor is deactivated.
func (b *Block) deactivateApp(ctx context.Context, typ, id string) error {
	resp, err := b.callApp(ctx, http.MethodDelete, actorPath(typ, id), http.Header{}, nil)
	if err != nil {
		return err
	}
	if resp.Status != http.StatusOK {
		return &appStatusError{status: resp.Status, body: string(resp.Data)}
	}
	return nil
}

// fetchConfig reads the app's GET /dapr/config. found is false when the app
// does not serve it (404 and other client errors): an app without actors.
func (b *Block) fetchConfig(ctx context.Context) (body []byte, found bool, err error) {
	resp, err := b.callApp(ctx, http.MethodGet, "/dapr/config", http.Header{}, nil)
	if err != nil {
		return nil, false, err
	}
	switch {
	case resp.Status == http.StatusOK:
		return resp.Data, true, nil
	case resp.Status >= 400 && resp.Status < 500:
		return nil, false, nil
	}
	return nil, false, fmt.Errorf("the app answered GET /dapr/config with %d", resp.Status)
}
