package grpcproxy

import (
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
)

// frame is one gRPC message of a proxied call, as the bytes that came off
// the wire: the proxy never knows the message's type.
type frame struct {
	data mem.BufferSlice
}

// free drops the message if nobody sent it on.
func (f *frame) free() {
	if f.data != nil {
		f.data.Free()
		f.data = nil
	}
}

var frames = sync.Pool{New: func() any { return new(frame) }}

func getFrame() *frame { return frames.Get().(*frame) }

// putFrame drops what f still holds (a message that was not sent on) and
// returns it to the pool.
func putFrame(f *frame) {
	f.free()
	frames.Put(f)
}

// rawCodec passes frames through as bytes and hands any other value to
// gRPC's proto codec, so that a server using it still serves its own
// generated services. Its name is "proto": forwarded calls then carry the
// usual content type (application/grpc+proto), which every gRPC server
// accepts.
//
// The codec keeps the received buffers (a reference, no copy) and hands
// them to the sending side, which frees them once written: a message
// crosses the sidecar without being copied.
type rawCodec struct {
	proto encoding.CodecV2
}

var codec = rawCodec{proto: encoding.GetCodecV2(proto.Name)}

func (c rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	if f, ok := v.(*frame); ok {
		out := f.data
		f.data = nil // gRPC frees it once written
		return out, nil
	}
	return c.proto.Marshal(v)
}

func (c rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	if f, ok := v.(*frame); ok {
		f.free()
		data.Ref() // gRPC frees its own reference when Unmarshal returns
		f.data = data
		return nil
	}
	return c.proto.Unmarshal(data, v)
}

func (rawCodec) Name() string { return proto.Name }

// ServerCodec is the server option a gRPC server needs to hand proxied
// calls to Forward or Deliver: their messages stay raw, every other
// service's are decoded as usual. It replaces the codec of that server only
// (not gRPC's process-wide registry, as daprd does).
func ServerCodec() grpc.ServerOption { return grpc.ForceServerCodecV2(codec) }
