package invoke

import (
	"fmt"
	"io"
	"sync/atomic"

	commonv1 "github.com/dapr/dapr/pkg/proto/common/v1"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/mecha-dev/mecha/internal/invokemsg"
)

// prepareReplay makes a request sendable more than once when it is cheap:
// a body of known length up to ReplayLimit is read into the message. A
// larger or streamed body stays a stream, counted, so that a retry happens
// only while none of it was consumed (the returned counter; nil when the
// body is in memory).
func (b *Block) prepareReplay(req *invokemsg.Request) (*countingReader, error) {
	if req.Body == nil {
		return nil, nil
	}
	if req.ContentLength >= 0 && req.ContentLength <= b.o.ReplayLimit {
		data, err := invokemsg.ReadAll(req.Body, req.ContentLength, b.o.ReplayLimit)
		if err != nil {
			return nil, fmt.Errorf("reading the request body: %w", err)
		}
		m := req.Message
		req.Message = &commonv1.InvokeRequest{
			Method: m.GetMethod(), ContentType: m.GetContentType(), HttpExtension: m.GetHttpExtension(),
			Data: &anypb.Any{TypeUrl: m.GetData().GetTypeUrl(), Value: data},
		}
		req.Body, req.ContentLength = nil, int64(len(data))
		return nil, nil
	}
	c := &countingReader{r: req.Body}
	req.Body = c
	return c, nil
}

// countingReader counts the bytes read through it (by the transport's
// goroutine).
type countingReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}
