package redisconn

import (
	"strings"
	"testing"
	"time"

	"github.com/mecha-dev/mecha/components"
	"github.com/mecha-dev/mecha/components/internal/props"
)

func parse(t *testing.T, def Defaults, kv ...string) (Settings, error) {
	t.Helper()
	p := map[string]string{}
	for i := 0; i < len(kv); i += 2 {
		p[kv[i]] = kv[i+1]
	}
	r := props.New(components.Metadata{Properties: p}, Unit)
	s := Parse(r, def)
	return s, r.Err()
}

func TestDefaults(t *testing.T) {
	def := Defaults{MaxRetries: 3, MinRetryBackoff: 8 * time.Millisecond, MaxRetryBackoff: 512 * time.Millisecond}
	s, err := parse(t, def, "redisHost", "cache")
	if err != nil {
		t.Fatal(err)
	}
	if s.Addr != "cache:6379" || s.DB != 0 || s.TLS != nil || s.MaxRetries != 3 ||
		s.MinRetryBackoff != 8*time.Millisecond || s.MaxRetryBackoff != 512*time.Millisecond ||
		s.DialTimeout != DefaultDialTimeout || s.ReadTimeout != DefaultReadTimeout || s.WriteTimeout != DefaultReadTimeout {
		t.Fatalf("settings = %+v", s)
	}
}

func TestProperties(t *testing.T) {
	s, err := parse(t, Defaults{},
		"redisHost", "[::1]", "redisPort", "6380", "redisDB", "2", "redisMaxRetries", "5",
		"redisMaxRetryInterval", "-1", "readTimeout", "-1", "dialTimeout", "250",
		"connMaxIdleTime", "1m", "connMaxLifetime", "1h", "enableTLS", "true", "insecureSkipTLSVerify", "true")
	if err != nil {
		t.Fatal(err)
	}
	if s.Addr != "[::1]:6380" || s.DB != 2 || s.MaxRetries != 5 || s.MaxRetryBackoff != -1 ||
		s.ReadTimeout != -1 || s.WriteTimeout != -1 || s.DialTimeout != 250*time.Millisecond ||
		s.ConnMaxIdleTime != time.Minute || s.ConnMaxLifetime != time.Hour {
		t.Fatalf("settings = %+v", s)
	}
	if s.TLS == nil || !s.TLS.InsecureSkipVerify || s.TLS.ServerName != "::1" {
		t.Fatalf("TLS = %+v", s.TLS)
	}
	if o := s.Options(); o.Addr != s.Addr || o.DialerRetries != 1 || !o.ContextTimeoutEnabled {
		t.Fatalf("options = %+v", o)
	}
}

func TestInvalid(t *testing.T) {
	tests := []struct {
		name string
		kv   []string
		want string
	}{
		{"no host", nil, `"redisHost": is required`},
		{"several hosts", []string{"redisHost", "a:1,b:2"}, "only a single node"},
		{"bad port", []string{"redisHost", "h", "redisPort", "0"}, `"redisPort"`},
		{"conflicting ports", []string{"redisHost", "h:1", "redisPort", "2"}, "but redisPort is 2"},
		{"negative db", []string{"redisHost", "h", "redisDB", "-1"}, `"redisDB": must not be negative`},
		{"retries", []string{"redisHost", "h", "maxRetries", "-2"}, `"maxRetries"`},
		{"negative dial timeout", []string{"redisHost", "h", "dialTimeout", "-1"}, `"dialTimeout": must not be negative`},
		{"negative max age", []string{"redisHost", "h", "connMaxLifetime", "-1"}, `"connMaxLifetime": must not be negative`},
		{"cluster", []string{"redisHost", "h", "redisType", "cluster"}, `"redisType"`},
		{"failover", []string{"redisHost", "h", "failover", "true"}, `"failover"`},
		{"entra", []string{"redisHost", "h", "useEntraID", "true"}, `"useEntraID"`},
		{"half a cert", []string{"redisHost", "h", "enableTLS", "true", "clientKey", "k"}, "must be set together"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parse(t, Defaults{}, tt.kv...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Parse error = %v, want one containing %s", err, tt.want)
			}
		})
	}
}
