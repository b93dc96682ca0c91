package configuration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"

	commonv1 "github.com/dapr/dapr/pkg/proto/common/v1"
	"google.golang.org/protobuf/types/known/anypb"

	cconfig "github.com/mecha-dev/mecha/components/configuration"
	"github.com/mecha-dev/mecha/internal/apierr"
)

// WireItem is an item's JSON shape, components-contrib's configuration.Item:
// empty fields are left out.
type WireItem struct {
	Value    string            `json:"value,omitempty"`
	Version  string            `json:"version,omitempty"`
	Metadata map[string]string `json:"metadata,omitempty"`
}

// WireItems converts items to their JSON shape; a nil item (a store's way to
// say "deleted") becomes an empty one.
func WireItems(items map[string]*Item) map[string]*WireItem {
	out := make(map[string]*WireItem, len(items))
	for k, it := range items {
		if it == nil {
			out[k] = &WireItem{}
			continue
		}
		out[k] = &WireItem{Value: it.Value, Version: it.Version, Metadata: it.Metadata}
	}
	return out
}

// updateJSON is the body of an update delivered to an HTTP app,
// components-contrib's configuration.UpdateEvent.
type updateJSON struct {
	ID    string               `json:"id"`
	Items map[string]*WireItem `json:"items"`
}

// SubscribeApp starts a subscription whose updates the block delivers to
// the app; it returns the subscription id. It needs the app channel.
func (b *Block) SubscribeApp(ctx context.Context, req SubscribeRequest) (string, error) {
	comp, err := b.store(req.Store)
	if err != nil {
		return "", err
	}
	if b.app == nil {
		return "", apierr.ConfigurationAppChannelNil.New("app channel is not initialized. cannot subscribe to configuration updates")
	}
	sub, err := b.subscribe(ctx, req, comp, true)
	if err != nil {
		return "", err
	}
	return sub.key.id, nil
}

// deliverLoop sends sub's updates to the app, in order, once the app is
// ready, until the subscription ends.
func (b *Block) deliverLoop(sub *subscription) {
	if err := b.app.WaitReady(sub.ctx); err != nil {
		return
	}
	for {
		select {
		case <-sub.ctx.Done():
			return
		case e := <-sub.events:
			// Hold updates while the app fails its health checks.
			if err := b.app.WaitReady(sub.ctx); err != nil {
				return
			}
			b.deliver(sub, e)
		}
	}
}

// deliver posts the update once per changed key, to
// /configuration/{store}/{key}, as daprd does. The app must answer 200;
// anything else is logged and the update is not retried (daprd neither).
func (b *Block) deliver(sub *subscription, e *cconfig.UpdateEvent) {
	body, err := json.Marshal(updateJSON{ID: sub.key.id, Items: WireItems(e.Items)})
	if err != nil {
		b.log.Error("cannot encode a configuration update", "store", sub.key.store, "subscription", sub.key.id, "error", err)
		return
	}
	keys := make([]string, 0, len(e.Items))
	for k := range e.Items {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, key := range keys {
		if sub.ctx.Err() != nil {
			return
		}
		path := "/configuration/" + url.PathEscape(sub.key.store) + "/" + url.PathEscape(key)
		if err := b.post(sub.ctx, path, body); err != nil && sub.ctx.Err() == nil {
			b.log.Warn("the app did not accept a configuration update", "store", sub.key.store, "subscription", sub.key.id, "key", key, "path", path, "error", err)
		}
	}
}

// post sends one update to the app: an HTTP POST, or for a gRPC app an
// OnInvoke of that path with the POST verb, as daprd's channel does.
func (b *Block) post(ctx context.Context, path string, body []byte) error {
	if b.app.GRPC != nil {
		_, err := b.app.GRPC.Callback.OnInvoke(ctx, &commonv1.InvokeRequest{
			Method:        path,
			Data:          &anypb.Any{Value: body},
			ContentType:   "application/json",
			HttpExtension: &commonv1.HTTPExtension{Verb: commonv1.HTTPExtension_POST},
		})
		return err
	}
	resp, err := b.app.HTTP.Do(ctx, http.MethodPost, path, http.Header{"Content-Type": {"application/json"}}, bytes.NewReader(body))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("error sending configuration item to application, status %d", resp.StatusCode)
	}
	return nil
}
