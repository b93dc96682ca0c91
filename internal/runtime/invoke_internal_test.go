package runtime

import (
	"reflect"
	"testing"
)

func TestInternalHosts(t *testing.T) {
	cases := []struct {
		listen, internal, want []string
	}{
		{[]string{"127.0.0.1"}, nil, []string{"127.0.0.1"}},
		{[]string{"0.0.0.0"}, nil, []string{"0.0.0.0"}},
		{[]string{"10.0.0.1"}, nil, []string{"127.0.0.1", "10.0.0.1"}},
		{[]string{"127.0.0.1"}, []string{"::1"}, []string{"127.0.0.1", "::1"}},
		{[]string{"127.0.0.1"}, []string{"0.0.0.0"}, []string{"0.0.0.0"}},
	}
	for _, c := range cases {
		if got := internalHosts(Options{ListenAddresses: c.listen, InternalListenAddresses: c.internal}); !reflect.DeepEqual(got, c.want) {
			t.Errorf("internalHosts(%v, %v) = %v, want %v", c.listen, c.internal, got, c.want)
		}
	}
}

func TestStringProperties(t *testing.T) {
	got, err := stringProperties(map[string]any{
		"s": "text", "n": 5, "f": 1.5, "b": true, "none": nil,
		"nested": map[string]any{"a": []any{1, "x"}},
	})
	want := map[string]string{"s": "text", "n": "5", "f": "1.5", "b": "true", "none": "", "nested": `{"a":[1,"x"]}`}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, %v; want %v", got, err, want)
	}
}
