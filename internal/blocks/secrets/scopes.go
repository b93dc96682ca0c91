package secrets

import "strings"

// Scope limits which secrets of one store the app may read through the API
// (Configuration spec.secrets.scopes[]). Secret names match exactly.
type Scope struct {
	StoreName string
	// DefaultAccess is "allow" (also when empty) or "deny", compared
	// case-insensitively; any other value counts as allow, as in daprd.
	DefaultAccess string
	// AllowedSecrets, when not empty, are the only readable secrets;
	// DeniedSecrets and DefaultAccess are then ignored.
	AllowedSecrets []string
	// DeniedSecrets are refused even when DefaultAccess is allow.
	DeniedSecrets []string
}

// policy is a Scope prepared for lookups.
type policy struct {
	deny    bool
	allowed map[string]bool // nil: no allow list
	denied  map[string]bool
}

// allows implements daprd's order: an allow list decides alone; otherwise
// a denied secret is refused; otherwise the default access applies.
func (p *policy) allows(name string) bool {
	if p.allowed != nil {
		return p.allowed[name]
	}
	if p.denied[name] {
		return false
	}
	return !p.deny
}

// SetScopes replaces the secret scopes. Stores without a scope allow every
// secret. A later scope for the same store replaces an earlier one. It is
// safe to call while requests are served.
func (b *Block) SetScopes(scopes []Scope) {
	m := make(map[string]*policy, len(scopes))
	for _, s := range scopes {
		p := &policy{deny: strings.EqualFold(strings.TrimSpace(s.DefaultAccess), "deny")}
		if len(s.AllowedSecrets) > 0 {
			p.allowed = set(s.AllowedSecrets)
		}
		p.denied = set(s.DeniedSecrets)
		m[s.StoreName] = p
	}
	b.scopes.Store(&m)
}

func set(names []string) map[string]bool {
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	return m
}

// policy returns the scope of store, nil when it has none.
func (b *Block) policy(store string) *policy {
	m := b.scopes.Load()
	if m == nil {
		return nil
	}
	return (*m)[store]
}

// allowed reports whether the app may read secret name of store.
func (b *Block) allowed(store, name string) bool {
	p := b.policy(store)
	return p == nil || p.allows(name)
}
