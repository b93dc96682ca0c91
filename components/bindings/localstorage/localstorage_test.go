package localstorage_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/mecha-dev/mecha/components"
	"github.com/mecha-dev/mecha/components/bindings"
	"github.com/mecha-dev/mecha/components/bindings/bindingstest"
	"github.com/mecha-dev/mecha/components/bindings/localstorage"
)

func newBinding(t *testing.T, root string) bindings.Output {
	t.Helper()
	b := localstorage.New(components.Deps{})
	if err := b.Init(context.Background(), components.Metadata{Name: "files", Type: "bindings.localstorage", Properties: map[string]string{"rootPath": root}}); err != nil {
		t.Fatalf("Init: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func fileName(n string) map[string]string { return map[string]string{"fileName": n} }

func TestConformance(t *testing.T) {
	op := func(o bindings.Operation, name string, data string) bindings.InvokeRequest {
		r := bindings.InvokeRequest{Operation: o, Metadata: map[string]string{}}
		if name != "" {
			r.Metadata = fileName(name)
		}
		if data != "" {
			r.Data = []byte(data)
		}
		return r
	}
	listed := func(want ...string) func(t *testing.T, r *bindings.InvokeResponse) {
		return func(t *testing.T, r *bindings.InvokeResponse) {
			var got []string
			if err := json.Unmarshal(r.Data, &got); err != nil {
				t.Fatalf("list answer %q: %v", r.Data, err)
			}
			if len(got) != len(want) {
				t.Fatalf("list = %q, want files ending in %q", got, want)
			}
			for i, g := range got {
				if !filepath.IsAbs(g) || !strings.HasSuffix(g, string(filepath.Separator)+filepath.FromSlash(want[i])) {
					t.Errorf("list[%d] = %q, want an absolute path ending in %q", i, g, want[i])
				}
			}
		}
	}
	cases := []bindingstest.OutputCase{
		{Name: "create a JSON string", Request: op("create", "a.txt", `"hello"`), WantData: []byte(`{"fileName":"a.txt"}`)},
		{Name: "get it unquoted", Request: op("get", "a.txt", ""), WantData: []byte("hello")},
		{Name: "create JSON", Request: op("create", "doc.json", `{"a":[1,2]}`), WantData: []byte(`{"fileName":"doc.json"}`)},
		{Name: "get JSON as is", Request: op("get", "doc.json", ""), WantData: []byte(`{"a":[1,2]}`)},
		{Name: "create base64 in a sub-directory", Request: op("create", "dir/./b.bin", `"AAEC/w=="`), WantData: []byte(`{"fileName":"dir/b.bin"}`)},
		{Name: "get decoded binary", Request: op("get", "dir/b.bin", ""), WantData: []byte{0, 1, 2, 0xff}},
		{Name: "overwrite", Request: op("create", "a.txt", `"hello again"`)},
		{Name: "get overwritten", Request: op("get", "a.txt", ""), WantData: []byte("hello again")},
		{Name: "list all", Request: op("list", "", ""), Check: listed("a.txt", "dir/b.bin", "doc.json")},
		{Name: "list a directory", Request: op("list", "dir", ""), Check: listed("dir/b.bin")},
		{Name: "list a file", Request: op("list", "a.txt", ""), WantErr: "not a directory"},
		{Name: "delete", Request: op("delete", "a.txt", ""), NoContent: true},
		{Name: "get deleted", Request: op("get", "a.txt", ""), WantErr: "file not found"},
		{Name: "delete missing", Request: op("delete", "a.txt", ""), WantErr: "file not found"},
		{
			Name: "create with a generated name", Request: op("create", "", `"x"`),
			Check: func(t *testing.T, r *bindings.InvokeResponse) {
				var got struct{ FileName string }
				if err := json.Unmarshal(r.Data, &got); err != nil || uuid.Validate(got.FileName) != nil {
					t.Fatalf("create answer %q, want a UUID fileName (%v)", r.Data, err)
				}
			},
		},
		{Name: "get without a name", Request: op("get", "", ""), WantErr: `"fileName" is required`},
		{Name: "create escaping with ..", Request: op("create", "../escape.txt", `"x"`), WantErr: "escapes rootPath"},
		{Name: "create escaping deep", Request: op("create", "dir/../../escape.txt", `"x"`), WantErr: "escapes rootPath"},
		{Name: "get absolute", Request: op("get", "/etc/passwd", ""), WantErr: "absolute path"},
		{Name: "get escaping", Request: op("get", "../../../../etc/passwd", ""), WantErr: "escapes rootPath"},
		{Name: "list escaping", Request: op("list", "..", ""), WantErr: "escapes rootPath"},
		{Name: "delete the root", Request: op("delete", ".", ""), WantErr: "rootPath itself"},
	}
	bindingstest.RunOutput(t, func(t *testing.T) bindings.Output {
		return newBinding(t, filepath.Join(t.TempDir(), "not", "yet", "there"))
	}, bindingstest.OutputOptions{
		Operations: []bindings.Operation{"create", "get", "list", "delete"},
		Cases:      cases,
	})
}

// TestSymlinkEscape checks that symbolic links cannot lead outside the root
// and that nothing is written there.
func TestSymlinkEscape(t *testing.T) {
	root, outside := t.TempDir(), t.TempDir()
	secret := filepath.Join(outside, "secret")
	if err := os.WriteFile(secret, []byte("s"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(root, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(secret, filepath.Join(root, "evil")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("inside.txt", filepath.Join(root, "fine")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "inside.txt"), []byte("in"), 0o600); err != nil {
		t.Fatal(err)
	}
	b := newBinding(t, root)
	tests := []struct {
		op   bindings.Operation
		name string
	}{
		{"create", "link/x.txt"},
		{"get", "link/secret"},
		{"get", "evil"},
		{"create", "evil"},
		{"delete", "link/secret"},
		{"list", "link"},
	}
	for _, tt := range tests {
		t.Run(string(tt.op)+" "+tt.name, func(t *testing.T) {
			resp, err := b.Invoke(context.Background(), &bindings.InvokeRequest{Operation: tt.op, Data: []byte(`"pwned"`), Metadata: fileName(tt.name)})
			if err == nil || !strings.Contains(err.Error(), "outside rootPath") {
				t.Fatalf("Invoke = %+v, %v; want an error saying the path leads outside rootPath", resp, err)
			}
		})
	}
	entries, _ := os.ReadDir(outside)
	if got, _ := os.ReadFile(secret); len(entries) != 1 || string(got) != "s" {
		t.Fatalf("outside directory changed: %d entries, secret %q", len(entries), got)
	}
	// A link that stays inside the root works.
	resp, err := b.Invoke(context.Background(), &bindings.InvokeRequest{Operation: "get", Metadata: fileName("fine")})
	if err != nil || string(resp.Data) != "in" {
		t.Fatalf("get through an inside link = %v, %v", resp, err)
	}
}

func TestInitErrors(t *testing.T) {
	file := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, root string
		want       string
	}{
		{"missing", "", "required"},
		{"a file", file, "not a directory"},
		{"under a file", filepath.Join(file, "sub"), "not a directory"},
		{"proc", "/proc/self", "not allowed"},
		{"secrets", "/var/run/secrets/kubernetes.io", "not allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := localstorage.New(components.Deps{})
			defer b.Close()
			err := b.Init(context.Background(), components.Metadata{Properties: map[string]string{"rootPath": tt.root}})
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), `"rootPath"`) {
				t.Fatalf("Init error = %v, want one about \"rootPath\" saying %q", err, tt.want)
			}
		})
	}
}
