package sqlite

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mecha-dev/mecha/components"
	"github.com/mecha-dev/mecha/components/nameresolution"
	"github.com/mecha-dev/mecha/components/nameresolution/nameresolutiontest"
)

func TestConformance(t *testing.T) {
	file := filepath.Join(t.TempDir(), "sub", "registry.db")
	nameresolutiontest.Run(t, nameresolutiontest.Options{
		New: func(testing.TB) nameresolution.Resolver { return New(components.Deps{}) },
		Metadata: components.Metadata{Name: "nr", Type: "nameresolution.sqlite", Properties: map[string]string{
			"connectionString": file, "updateInterval": "50ms", "ttl": "300ms",
		}},
		Crash:  func(r nameresolution.Resolver) { r.(*Resolver).abandon() },
		Expiry: 5 * time.Second,
	})
}

func TestConfig(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name    string
		props   map[string]string
		wantErr string
	}{
		{"no connectionString", map[string]string{}, "connectionString"},
		{"memory", map[string]string{"connectionString": ":memory:"}, "in-memory"},
		{"memory uri", map[string]string{"connectionString": "file:x?mode=memory"}, "in-memory"},
		{"remote", map[string]string{"connectionString": "file://server/x.db"}, "remote host"},
		{"bad interval", map[string]string{"connectionString": filepath.Join(dir, "a.db"), "updateInterval": "0s"}, "updateInterval"},
		{"ttl too short", map[string]string{"connectionString": filepath.Join(dir, "a.db"), "updateInterval": "2s", "ttl": "1s"}, "ttl"},
		{"not a duration", map[string]string{"connectionString": filepath.Join(dir, "a.db"), "ttl": "soon"}, "ttl"},
		{"bad table", map[string]string{"connectionString": filepath.Join(dir, "a.db"), "tableName": "x;drop"}, "tableName"},
		{"pragma", map[string]string{"connectionString": filepath.Join(dir, "a.db") + "?_pragma=busy_timeout(1)"}, "busyTimeout"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := New(components.Deps{})
			err := r.Init(context.Background(), components.Metadata{Properties: c.props})
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				r.Close()
				t.Fatalf("Init error = %v, want one mentioning %q", err, c.wantErr)
			}
		})
	}
	got, err := parseConfig(components.Metadata{Properties: map[string]string{"connectionString": "r.db", "updateInterval": "3"}})
	if err != nil || got.UpdateInterval != 3*time.Second || got.TTL != 9*time.Second || got.TableName != "instances" {
		t.Fatalf("parseConfig = %+v, %v; want interval 3s, ttl 9s, table instances", got, err)
	}
}

// TestRegisterBeforeInit and after Close fail cleanly instead of panicking.
func TestLifecycleErrors(t *testing.T) {
	r := New(components.Deps{})
	in := nameresolution.Instance{InstanceID: "i", AppID: "a", Address: "127.0.0.1:1"}
	if err := r.Register(context.Background(), in); err == nil {
		t.Fatal("Register before Init succeeded")
	}
	if _, err := r.Resolve(context.Background(), nameresolution.ResolveRequest{ID: "a"}); err == nil {
		t.Fatal("Resolve before Init succeeded")
	}
	if err := r.Close(); err != nil {
		t.Fatalf("Close before Init: %v", err)
	}
	r = New(components.Deps{})
	if err := r.Init(context.Background(), components.Metadata{Properties: map[string]string{"connectionString": filepath.Join(t.TempDir(), "r.db")}}); err != nil {
		t.Fatal(err)
	}
	if err := r.Register(context.Background(), nameresolution.Instance{AppID: "a"}); err == nil {
		t.Fatal("Register without instance id and address succeeded")
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Register(context.Background(), in); err == nil {
		t.Fatal("Register after Close succeeded")
	}
}
