package runtime_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/mecha-dev/mecha/internal/mechatest"
	"github.com/mecha-dev/mecha/internal/runtime"
)

// TestComponentScopes: a component whose scopes do not list the app is
// not loaded for it, through every API that would reach it (state, pub/sub,
// metadata); components listing the app, or listing none, are.
func TestComponentScopes(t *testing.T) {
	scoped := func(doc string, apps ...string) string {
		return doc + "scopes:\n- " + strings.Join(apps, "\n- ") + "\n"
	}
	s := mechatest.Start(t, func(o *runtime.Options) { o.AppID = "scoped-app" },
		scoped(mechatest.Component("mine", "state.in-memory"), "other", "scoped-app"),
		scoped(mechatest.Component("theirs", "state.in-memory"), "other"),
		mechatest.Component("everyone", "state.in-memory"),
		scoped(mechatest.Component("theirpubsub", "pubsub.in-memory"), "other"),
		scoped(mechatest.Component("mypubsub", "pubsub.in-memory"), "scoped-app"),
	)
	for _, store := range []string{"mine", "everyone"} {
		if r := s.Do(t, http.MethodPost, "/v1.0/state/"+store, []map[string]any{{"key": "k", "value": "v"}}); r.Status != http.StatusNoContent {
			t.Errorf("save to %s: %d %s", store, r.Status, r.Body)
		}
	}
	if r := s.Do(t, http.MethodPost, "/v1.0/state/theirs", []map[string]any{{"key": "k", "value": "v"}}); r.Status != http.StatusBadRequest || r.ErrorCode() != "ERR_STATE_STORE_NOT_FOUND" {
		t.Errorf("save to theirs: %d %s, want 400 ERR_STATE_STORE_NOT_FOUND", r.Status, r.Body)
	}
	if r := s.Do(t, http.MethodGet, "/v1.0/state/theirs/k", nil); r.Status != http.StatusBadRequest || r.ErrorCode() != "ERR_STATE_STORE_NOT_FOUND" {
		t.Errorf("get from theirs: %d %s", r.Status, r.Body)
	}
	if r := s.Do(t, http.MethodPost, "/v1.0/publish/theirpubsub/t", "x"); r.Status != http.StatusNotFound || r.ErrorCode() != "ERR_PUBSUB_NOT_FOUND" {
		t.Errorf("publish to theirpubsub: %d %s, want 404 ERR_PUBSUB_NOT_FOUND", r.Status, r.Body)
	}
	if r := s.Do(t, http.MethodPost, "/v1.0/publish/mypubsub/t", "x"); r.Status != http.StatusNoContent {
		t.Errorf("publish to mypubsub: %d %s", r.Status, r.Body)
	}
	var md struct {
		Components []struct{ Name string } `json:"components"`
	}
	s.Do(t, http.MethodGet, "/v1.0/metadata", nil).JSON(t, &md)
	names := map[string]bool{}
	for _, c := range md.Components {
		names[c.Name] = true
	}
	if !names["mine"] || !names["everyone"] || !names["mypubsub"] || names["theirs"] || names["theirpubsub"] {
		t.Errorf("metadata lists %v", names)
	}
}
