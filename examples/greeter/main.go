// Command greeter is the service half of the multi-app example: a plain HTTP
// server on APP_PORT that other apps call through their sidecars
// (service invocation). It answers POST /greet with a greeting for the name
// in the body, and counts the greetings it has given.
//
//	mecha run -f examples/apps.yaml
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	port := os.Getenv("APP_PORT")
	if port == "" {
		port = "8088"
	}
	var served atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("POST /greet", func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(io.LimitReader(r.Body, 1<<10))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		name := strings.TrimSpace(string(b))
		if name == "" {
			name = "stranger"
		}
		n := served.Add(1)
		// The sidecar tells the app who called it.
		fmt.Printf("greeting %s (caller: %s)\n", name, r.Header.Get("dapr-caller-app-id"))
		fmt.Fprintf(w, "Hello, %s! (greeting #%d from %s)", name, n, os.Getenv("APP_ID"))
	})
	srv := &http.Server{Addr: "127.0.0.1:" + port, Handler: mux, ReadHeaderTimeout: 5 * time.Second}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	fmt.Printf("listening on %s\n", srv.Addr)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
	fmt.Printf("stopped after %d greetings\n", served.Load())
}
