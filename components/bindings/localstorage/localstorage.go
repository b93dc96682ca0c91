// Package localstorage is the bindings.localstorage output binding: files
// under a root directory, with Dapr's operations create, get, list and
// delete.
//
// Every file name comes from the caller (request metadata "fileName"), so
// the binding confines all access to rootPath: names that are absolute or
// contain ".." are rejected before any file system call, and every access
// goes through an os.Root, which also refuses symbolic links that lead
// outside the root. (Dapr instead resolves such names inside the root; Mecha
// reports them as errors so that a bug or an attack is visible.)
//
// Compatibility with Dapr: create stores the request data as it arrives,
// except that a JSON string is unquoted and then, when it is valid base64,
// decoded (Dapr's way to upload binary files); create answers
// {"fileName": "<name>"}; list answers a JSON array of the absolute paths
// of the files below rootPath (or below fileName).
package localstorage

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/google/uuid"

	"github.com/mecha-dev/mecha/components"
	"github.com/mecha-dev/mecha/components/bindings"
	"github.com/mecha-dev/mecha/components/bindings/internal/mdcheck"
)

// Binding is the local storage output binding.
type Binding struct {
	log *slog.Logger

	mu       sync.RWMutex
	rootPath string   // absolute, symlinks resolved
	root     *os.Root // nil before Init and after Close
}

var _ bindings.Output = (*Binding)(nil)

// disallowedRoots are system trees a rootPath may not point into, as in
// Dapr.
var disallowedRoots = []string{"/proc", "/sys", "/boot", "/var/run/secrets"}

// New returns an uninitialised binding.
func New(d components.Deps) *Binding {
	log := d.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Binding{log: log}
}

// Init resolves rootPath, creates it when missing and opens it.
func (b *Binding) Init(_ context.Context, md components.Metadata) error {
	mdcheck.WarnUnknown(b.log, md, "rootPath")
	p, err := resolveRoot(md.String("rootPath", ""))
	if err != nil {
		return err
	}
	if err := os.MkdirAll(p, 0o755); err != nil {
		return fmt.Errorf("metadata %q: creating %s: %w", "rootPath", p, err)
	}
	root, err := os.OpenRoot(p)
	if err != nil {
		return fmt.Errorf("metadata %q: opening %s: %w", "rootPath", p, err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.root != nil {
		b.root.Close()
	}
	b.rootPath, b.root = p, root
	return nil
}

// resolveRoot makes rootPath absolute, resolves the symbolic links of the
// part that exists and refuses system locations.
func resolveRoot(rootPath string) (string, error) {
	if strings.TrimSpace(rootPath) == "" {
		return "", errors.New(`metadata "rootPath" is required`)
	}
	p, err := filepath.Abs(rootPath)
	if err != nil {
		return "", fmt.Errorf("metadata %q: %w", "rootPath", err)
	}
	// Resolve links in the longest existing prefix; the rest is created.
	existing, rest := p, ""
	for {
		fi, err := os.Stat(existing)
		if err == nil {
			if !fi.IsDir() {
				return "", fmt.Errorf("metadata %q: %s is not a directory", "rootPath", existing)
			}
			break
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("metadata %q: %w", "rootPath", err)
		}
		parent := filepath.Dir(existing)
		if parent == existing {
			break
		}
		rest = filepath.Join(filepath.Base(existing), rest)
		existing = parent
	}
	resolved, err := filepath.EvalSymlinks(existing)
	if err != nil {
		return "", fmt.Errorf("metadata %q: %w", "rootPath", err)
	}
	abs := p
	p = filepath.Join(resolved, rest)
	for _, d := range disallowedRoots {
		// Compare both spellings: /var/run is often a link to /run.
		forms := []string{d}
		if r, err := filepath.EvalSymlinks(d); err == nil {
			forms = append(forms, r)
		} else if r, err := filepath.EvalSymlinks(filepath.Dir(d)); err == nil {
			forms = append(forms, filepath.Join(r, filepath.Base(d)))
		}
		for _, f := range forms {
			for _, c := range []string{abs, p} {
				if c == f || strings.HasPrefix(c, f+string(filepath.Separator)) {
					return "", fmt.Errorf("metadata %q: %s is inside %s, which is not allowed", "rootPath", c, d)
				}
			}
		}
	}
	return p, nil
}

// Operations lists Dapr's local storage operations.
func (b *Binding) Operations() []bindings.Operation {
	return []bindings.Operation{bindings.OperationCreate, bindings.OperationGet, bindings.OperationList, bindings.OperationDelete}
}

// Invoke performs one operation on the file named by metadata "fileName".
func (b *Binding) Invoke(_ context.Context, req *bindings.InvokeRequest) (*bindings.InvokeResponse, error) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.root == nil {
		return nil, errors.New("local storage binding is not initialised or closed")
	}
	name := req.Metadata["fileName"]
	switch req.Operation {
	case bindings.OperationCreate:
		if name == "" {
			name = uuid.NewString()
		}
		return b.create(name, req.Data)
	case bindings.OperationGet:
		return b.get(name)
	case bindings.OperationDelete:
		return b.delete(name)
	case bindings.OperationList:
		return b.list(name)
	}
	return nil, fmt.Errorf("unsupported operation %s", req.Operation)
}

// localName checks a caller-supplied name and returns it in slash form,
// cleaned, relative to the root. allowRoot accepts "" (the root itself).
func localName(name string, allowRoot bool) (string, error) {
	if name == "" {
		if allowRoot {
			return ".", nil
		}
		return "", errors.New(`metadata "fileName" is required`)
	}
	if strings.ContainsRune(name, 0) {
		return "", fmt.Errorf("fileName %q contains a NUL byte", name)
	}
	slashed := filepath.ToSlash(name)
	if path.IsAbs(slashed) || filepath.IsAbs(name) || filepath.VolumeName(name) != "" {
		return "", fmt.Errorf("fileName %q is an absolute path; it must be relative to rootPath", name)
	}
	for _, el := range strings.Split(slashed, "/") {
		if el == ".." {
			return "", fmt.Errorf("fileName %q escapes rootPath: \"..\" is not allowed", name)
		}
	}
	clean := path.Clean(slashed)
	if clean == "." && !allowRoot {
		return "", fmt.Errorf("fileName %q names rootPath itself, not a file", name)
	}
	return clean, nil
}

// rootErr makes the os.Root refusal of a symbolic link that leads outside
// the root explicit.
func rootErr(op, name string, err error) error {
	if err != nil && strings.Contains(err.Error(), "escapes") {
		return fmt.Errorf("%s %q: the path leads outside rootPath (through a symbolic link): %w", op, name, err)
	}
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s %q: file not found", op, name)
	}
	return fmt.Errorf("%s %q: %w", op, name, err)
}

func (b *Binding) create(name string, data []byte) (*bindings.InvokeResponse, error) {
	rel, err := localName(name, false)
	if err != nil {
		return nil, err
	}
	if s, err := strconv.Unquote(string(data)); err == nil {
		data = []byte(s)
	}
	if decoded, err := base64.StdEncoding.DecodeString(string(data)); err == nil {
		data = decoded
	}
	if dir := path.Dir(rel); dir != "." {
		if err := b.root.MkdirAll(dir, 0o755); err != nil {
			return nil, rootErr("creating the directory of", name, err)
		}
	}
	f, err := b.root.OpenFile(rel, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, rootErr("creating", name, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return nil, rootErr("writing", name, err)
	}
	if err := f.Close(); err != nil {
		return nil, rootErr("writing", name, err)
	}
	b.log.Debug("wrote file", "fileName", rel, "bytes", len(data))
	out, _ := json.Marshal(struct {
		FileName string `json:"fileName"`
	}{filepath.FromSlash(rel)})
	return &bindings.InvokeResponse{Data: out, ContentType: "application/json"}, nil
}

func (b *Binding) get(name string) (*bindings.InvokeResponse, error) {
	rel, err := localName(name, false)
	if err != nil {
		return nil, err
	}
	data, err := b.root.ReadFile(rel)
	if err != nil {
		return nil, rootErr("reading", name, err)
	}
	if data == nil {
		data = []byte{}
	}
	return &bindings.InvokeResponse{Data: data}, nil
}

func (b *Binding) delete(name string) (*bindings.InvokeResponse, error) {
	rel, err := localName(name, false)
	if err != nil {
		return nil, err
	}
	if err := b.root.Remove(rel); err != nil {
		return nil, rootErr("deleting", name, err)
	}
	return nil, nil
}

func (b *Binding) list(name string) (*bindings.InvokeResponse, error) {
	rel, err := localName(name, true)
	if err != nil {
		return nil, err
	}
	fi, err := b.root.Stat(rel)
	if err != nil {
		return nil, rootErr("listing", name, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("listing %q: not a directory", name)
	}
	files := []string{}
	err = fs.WalkDir(b.root.FS(), rel, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			files = append(files, filepath.Join(b.rootPath, filepath.FromSlash(p)))
		}
		return nil
	})
	if err != nil {
		return nil, rootErr("listing", name, err)
	}
	out, err := json.Marshal(files)
	if err != nil {
		return nil, err
	}
	return &bindings.InvokeResponse{Data: out, ContentType: "application/json"}, nil
}

// Close releases the root directory; it is idempotent.
func (b *Binding) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.root == nil {
		return nil
	}
	err := b.root.Close()
	b.root = nil
	return err
}
