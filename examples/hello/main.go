// Command hello is the bundled example app: it talks to its Mecha (or daprd)
// sidecar over plain HTTP, the way any language can. It waits for the
// sidecar, increments a visit counter in the "statestore" state store with
// optimistic concurrency (ETag), and prints what it read back.
//
//	mecha run --app-id hello -- go run ./examples/hello
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

type visit struct {
	Count   int       `json:"count"`
	Message string    `json:"message"`
	When    time.Time `json:"when"`
}

func main() {
	port := os.Getenv("DAPR_HTTP_PORT")
	if port == "" {
		port = "3500"
	}
	base := "http://127.0.0.1:" + port + "/v1.0"
	if err := waitForSidecar(base, 10*time.Second); err != nil {
		fail(err)
	}
	for attempt := 0; attempt < 5; attempt++ {
		v, etag, err := load(base)
		if err != nil {
			fail(err)
		}
		v.Count++
		v.Message = fmt.Sprintf("hello from %s, visit number %d", os.Getenv("APP_ID"), v.Count)
		v.When = time.Now().UTC().Truncate(time.Second)
		conflict, err := save(base, v, etag)
		if err != nil {
			fail(err)
		}
		if conflict {
			continue // someone else wrote in between: read again
		}
		got, _, err := load(base)
		if err != nil {
			fail(err)
		}
		b, _ := json.Marshal(got)
		fmt.Printf("saved and read back from the state store: %s\n", b)
		return
	}
	fail(fmt.Errorf("too many concurrent writers"))
}

func waitForSidecar(base string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		resp, err := http.Get(base + "/healthz/outbound")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusNoContent {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("sidecar not ready after %v (last error: %v)", timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func load(base string) (visit, string, error) {
	var v visit
	resp, err := http.Get(base + "/state/statestore/visits")
	if err != nil {
		return v, "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	switch resp.StatusCode {
	case http.StatusNoContent:
		return v, "", nil
	case http.StatusOK:
		return v, resp.Header.Get("ETag"), json.Unmarshal(body, &v)
	}
	return v, "", fmt.Errorf("get state: %s: %s", resp.Status, body)
}

func save(base string, v visit, etag string) (conflict bool, err error) {
	item := map[string]any{"key": "visits", "value": v}
	if etag != "" {
		item["etag"] = etag
	} else {
		item["options"] = map[string]string{"concurrency": "first-write"}
	}
	body, _ := json.Marshal([]any{item})
	resp, err := http.Post(base+"/state/statestore", "application/json", bytes.NewReader(body))
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(resp.Body)
	switch resp.StatusCode {
	case http.StatusNoContent:
		return false, nil
	case http.StatusConflict:
		return true, nil
	}
	return false, fmt.Errorf("save state: %s: %s", resp.Status, msg)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "hello:", err)
	os.Exit(1)
}
