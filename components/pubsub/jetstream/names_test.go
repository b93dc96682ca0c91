package jetstream

import (
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/mecha-dev/mecha/components"
)

func TestNameFor(t *testing.T) {
	long := strings.Repeat("x", 100)
	tests := []struct {
		in       string
		same     bool
		contains string
	}{
		{"orders", true, ""},
		{"Orders-2_x", true, ""},
		{"a.b", false, "a_b_"},
		{"with/slash", false, "with_slash_"},
		{"sp ace", false, "sp_ace_"},
		{"wild*", false, "wild__"},
		{long, false, "xxxx"},
	}
	seen := map[string]string{}
	for _, tt := range tests {
		got := nameFor(tt.in)
		if tt.same != (got == tt.in) {
			t.Errorf("nameFor(%q) = %q, want it unchanged: %v", tt.in, got, tt.same)
		}
		if !strings.Contains(got, tt.contains) || !validName(got) || len(got) > maxNameLen {
			t.Errorf("nameFor(%q) = %q: want a valid name of at most %d bytes containing %q", tt.in, got, maxNameLen, tt.contains)
		}
		if prev, ok := seen[got]; ok {
			t.Errorf("nameFor(%q) = nameFor(%q) = %q", tt.in, prev, got)
		}
		seen[got] = tt.in
	}
	if nameFor("a.b") == nameFor("a/b") {
		t.Error("a.b and a/b share a stream name")
	}
}

func TestSubjectMatches(t *testing.T) {
	tests := []struct {
		filter, subject string
		want            bool
	}{
		{"orders", "orders", true},
		{"orders", "orders.new", false},
		{"orders.*", "orders.new", true},
		{"orders.*", "orders.new.eu", false},
		{"orders.>", "orders.new.eu", true},
		{"orders.>", "orders", false},
		{">", "anything.at.all", true},
		{"*.new", "orders.new", true},
		{"*.new", "orders.old", false},
	}
	for _, tt := range tests {
		if got := subjectMatches(tt.filter, tt.subject); got != tt.want {
			t.Errorf("subjectMatches(%q, %q) = %v, want %v", tt.filter, tt.subject, got, tt.want)
		}
	}
}

func TestMetadataRoundTrip(t *testing.T) {
	md := map[string]string{
		"plain":         "v",
		"ünïcode":       "välue ✓",
		"colon:key":     "v",
		"line":          "a\nb",
		"leading":       " x",
		"nats-msg-id":   "reserved",
		"Mecha-Expires": "reserved too",
		"empty":         "",
	}
	h := nats.Header{}
	if err := setMetadata(h, md); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"plain", "empty"} {
		if _, ok := h[k]; !ok {
			t.Errorf("%q is not a plain header: %v", k, h)
		}
	}
	if h.Get(metadataHeader) == "" {
		t.Fatalf("no %s header for the unsafe pairs: %v", metadataHeader, h)
	}
	// As a server would deliver it: with headers of its own.
	h.Set("Nats-Sequence", "5")
	got, err := readMetadata(h)
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(got, md) {
		t.Fatalf("round trip = %q, want %q", got, md)
	}
	if got, err := readMetadata(nats.Header{"Nats-Msg-Id": {"x"}}); got != nil || err != nil {
		t.Fatalf("readMetadata of server headers only = %q, %v; want nil", got, err)
	}
}

func TestCloudEventID(t *testing.T) {
	tests := map[string]string{
		`{"specversion":"1.0","id":"abc","data":1}`:  "abc",
		"  \n{\"id\":\"x\",\"specversion\":\"1.0\"}": "x",
		`{"id":"no-specversion"}`:                    "",
		`not json`:                                   "",
		`{"specversion":"1.0","id":`:                 "",
		``:                                           "",
	}
	for in, want := range tests {
		if got := cloudEventID([]byte(in)); got != want {
			t.Errorf("cloudEventID(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestNakDelay(t *testing.T) {
	s := settings{}
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 30 * time.Second, 30 * time.Second}
	for i, w := range want {
		if got := s.nakDelay(uint64(i + 1)); got != w {
			t.Errorf("default nakDelay(%d) = %v, want %v", i+1, got, w)
		}
	}
	s.BackOff = []time.Duration{50 * time.Millisecond, time.Second}
	for n, w := range map[uint64]time.Duration{0: 50 * time.Millisecond, 1: 50 * time.Millisecond, 2: time.Second, 9: time.Second} {
		if got := s.nakDelay(n); got != w {
			t.Errorf("nakDelay(%d) with backOff = %v, want %v", n, got, w)
		}
	}
}

func TestParseSettings(t *testing.T) {
	s, warnings, err := parseSettings(components.Metadata{Properties: map[string]string{
		"natsURL": "nats://a:4222, nats://b:4222", "consumerID": "app", "queueGroupName": "queue",
		"ackWait": "10", "backOff": "50ms, 1s,10s", "concurrency": "parallel", "deliverPolicy": "time",
		"startTime": "1630349391", "ackPolicy": "all", "rateLimit": "1024", "bogus": "x",
	}})
	if err != nil {
		t.Fatal(err)
	}
	if s.Group != "queue" {
		t.Errorf("Group = %q, want queueGroupName over consumerID", s.Group)
	}
	if s.AckWait != 10*time.Second {
		t.Errorf("AckWait = %v, want 10s (bare numbers are seconds)", s.AckWait)
	}
	if len(s.BackOff) != 3 || s.BackOff[2] != 10*time.Second {
		t.Errorf("BackOff = %v", s.BackOff)
	}
	if s.Concurrency != DefaultParallelism || s.StartTime.Unix() != 1630349391 || s.Name != DefaultName {
		t.Errorf("settings = %+v", s)
	}
	joined := strings.Join(warnings, "\n")
	for _, w := range []string{`ackPolicy "all"`, `"rateLimit"`, `"bogus"`} {
		if !strings.Contains(joined, w) {
			t.Errorf("warnings %q do not mention %s", warnings, w)
		}
	}
	s, _, err = parseSettings(components.Metadata{Properties: map[string]string{"natsURL": "nats://a", "consumerID": "app", "durableName": "durable", "concurrency": "7"}})
	if err != nil || s.Group != "durable" || s.Concurrency != 7 {
		t.Fatalf("settings = %+v, %v; want group durable, concurrency 7", s, err)
	}
}
