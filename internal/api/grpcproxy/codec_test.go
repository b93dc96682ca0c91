package grpcproxy

import (
	"bytes"
	"testing"

	"google.golang.org/grpc/codes"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

func TestCodec(t *testing.T) {
	msg := &testpb.SimpleRequest{ResponseSize: 7, Payload: &testpb.Payload{Body: []byte("hello")}}
	wire, err := codec.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	want := wire.Materialize()

	// A frame takes the bytes as they are and gives the same bytes back,
	// once: Marshal hands them over.
	f := getFrame()
	if err := codec.Unmarshal(wire, f); err != nil {
		t.Fatal(err)
	}
	wire.Free() // gRPC drops its reference when Unmarshal returns
	out, err := codec.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	if got := out.Materialize(); !bytes.Equal(got, want) {
		t.Fatalf("frame round trip: got %x, want %x", got, want)
	}
	out.Free()
	if again, _ := codec.Marshal(f); again.Len() != 0 {
		t.Fatalf("a frame marshalled twice gave %d bytes the second time", again.Len())
	}
	putFrame(f)

	// Any other message is proto.
	var back testpb.SimpleRequest
	if err := codec.Unmarshal(mem.BufferSlice{mem.SliceBuffer(want)}, &back); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(&back, msg) {
		t.Fatalf("proto fallback decoded %v, want %v", &back, msg)
	}
	if codec.Name() != "proto" {
		t.Fatalf("codec name %q: forwarded calls must carry application/grpc+proto", codec.Name())
	}
}

func TestTargetOf(t *testing.T) {
	for _, tc := range []struct {
		md   metadata.MD
		want string
	}{
		{metadata.Pairs("dapr-app-id", "b"), "b"},
		{metadata.Pairs("dapr-callee-app-id", "c", "dapr-app-id", "b"), "c"},
		{metadata.Pairs("dapr-callee-app-id", "", "dapr-app-id", "b"), "b"},
		{metadata.Pairs("dapr-app-id", ""), ""},
		{metadata.Pairs("x-other", "b"), ""},
		{nil, ""},
	} {
		if got := targetOf(tc.md); got != tc.want {
			t.Errorf("targetOf(%v) = %q, want %q", tc.md, got, tc.want)
		}
	}
}

func TestUnimplemented(t *testing.T) {
	for _, tc := range []struct {
		method string
		served []string
		want   string
	}{
		{"/helloworld.Greeter/SayHello", nil, "unknown service helloworld.Greeter"},
		{"/helloworld.Greeter/SayHello", []string{"dapr.proto.runtime.v1.Dapr"}, "unknown service helloworld.Greeter"},
		{"/dapr.proto.runtime.v1.Dapr/Nope", []string{"dapr.proto.runtime.v1.Dapr"}, "unknown method Nope for service dapr.proto.runtime.v1.Dapr"},
	} {
		st := status.Convert(Unimplemented(tc.method, tc.served...))
		if st.Code() != codes.Unimplemented || st.Message() != tc.want {
			t.Errorf("Unimplemented(%s, %v) = %v, want %q", tc.method, tc.served, st, tc.want)
		}
	}
}
