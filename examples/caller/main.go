// Command caller is the client half of the multi-app example: it calls the
// greeter app by its app id through its own sidecar, the way any language
// can (POST /v1.0/invoke/greeter/method/greet on DAPR_HTTP_PORT), prints
// the answers and exits; the greeter keeps running until Ctrl-C.
//
//	mecha run -f examples/apps.yaml
package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

func main() {
	port := os.Getenv("DAPR_HTTP_PORT")
	if port == "" {
		port = "3500"
	}
	target := os.Getenv("TARGET_APP_ID")
	if target == "" {
		target = "greeter"
	}
	url := "http://127.0.0.1:" + port + "/v1.0/invoke/" + target + "/method/greet"
	client := &http.Client{Timeout: 5 * time.Second}
	for _, name := range []string{"Ada", "Grace", "Linus"} {
		answer, err := callWhenReady(client, url, name, 30*time.Second)
		if err != nil {
			fmt.Fprintln(os.Stderr, "caller:", err)
			os.Exit(1)
		}
		fmt.Printf("%s asked, %s answered: %s\n", name, target, answer)
	}
}

// callWhenReady retries while the greeter (started at the same time) is not
// listening yet.
func callWhenReady(c *http.Client, url, name string, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		answer, err := call(c, url, name)
		if err == nil {
			return answer, nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("no answer after %v: %w", timeout, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func call(c *http.Client, url, name string) (string, error) {
	resp, err := c.Post(url, "text/plain", strings.NewReader(name))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %s", resp.Status, b)
	}
	return string(b), nil
}
