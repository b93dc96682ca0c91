package mqtt3_test

import (
	"context"
	"testing"

	"github.com/mecha-dev/mecha/components/pubsub"
	"github.com/mecha-dev/mecha/components/pubsub/mqtt3"
	"github.com/mecha-dev/mecha/components/pubsub/pubsubtest"
)

type split struct {
	*mqtt3.Broker
	sub *mqtt3.Broker
}

func (s split) Subscribe(ctx context.Context, req pubsub.SubscribeRequest, h pubsub.Handler) error {
	return s.sub.Subscribe(ctx, req, h)
}

func BenchmarkSplit(b *testing.B) {
	url := pubsubtest.ServiceEnv(b, "MQTT_URL")
	g := unique("bench")
	pubsubtest.Bench(b, split{newBroker(b, url, g), newBroker(b, url, g)})
}
