package httpapi_test

import (
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mecha-dev/mecha/internal/mechatest"
)

// TestInputBindingAnswerSavesState: an app answering an input event with
// {"storeName", "state"} gets that state saved, as daprd does.
func TestInputBindingAnswerSavesState(t *testing.T) {
	var n atomic.Int64
	port := mechatest.HTTPApp(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if r.Method == http.MethodOptions {
			return
		}
		i := n.Add(1)
		fmt.Fprintf(w, `{"storeName":"statestore","state":[{"key":"tick","value":{"n":%d}}]}`, i)
	}))
	s := mechatest.Start(t, mechatest.App("binder", port, "http"), mechatest.InMemory,
		mechatest.Component("tick", "bindings.cron", "schedule", "@every 1s"))
	mechatest.Eventually(t, 15*time.Second, func() error {
		r := s.Do(t, "GET", "/v1.0/state/statestore/tick", nil)
		if r.Status != 200 || string(r.Body) == "" {
			return fmt.Errorf("state not saved yet: %d %s", r.Status, r.Body)
		}
		return nil
	})
	r := s.Do(t, "GET", "/v1.0/state/statestore/tick", nil)
	if want := fmt.Sprintf(`{"n":%d}`, n.Load()); string(r.Body) != want && string(r.Body) != fmt.Sprintf(`{"n":%d}`, n.Load()-1) {
		t.Fatalf("saved state = %s, want the app's latest answer %s", r.Body, want)
	}
}
