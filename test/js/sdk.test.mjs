// The official Dapr JavaScript SDK (@dapr/dapr, pinned in package.json)
// driving the real mecha binary, over HTTP and over gRPC: state, service
// invocation, pub/sub, secrets, locks, metadata and actors, each asserting
// the values that come back, not only that a call did not throw.
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import path from "node:path";
import {
  DaprClient, DaprServer, CommunicationProtocolEnum, HttpMethod, LogLevel,
  AbstractActor, ActorProxyBuilder, ActorId,
} from "@dapr/dapr";
import {
  startSidecar, startPlacement, component, freePort, tempDir, removeTempDirs, eventually, sleep,
} from "./harness.mjs";

const logger = { level: LogLevel.Error };
const protocols = [
  ["http", CommunicationProtocolEnum.HTTP],
  ["grpc", CommunicationProtocolEnum.GRPC],
];

const procs = [];
after(async () => {
  await Promise.all(procs.splice(0).map((p) => p.stop()));
  removeTempDirs();
});

async function sidecar(opts) {
  const sc = await startSidecar(opts);
  procs.push(sc);
  return sc;
}

function client(sc, proto) {
  return new DaprClient({
    daprHost: "127.0.0.1",
    daprPort: String(proto === CommunicationProtocolEnum.HTTP ? sc.httpPort : sc.grpcPort),
    communicationProtocol: proto,
    logger,
  });
}

// stopOnFailure prints a process's output when an assertion fails, so a
// CI log shows what the sidecar said.
async function withOutput(procsToShow, fn) {
  try {
    await fn();
  } catch (e) {
    for (const p of procsToShow) console.error(`--- ${p.name} output ---\n${p.output}`);
    throw e;
  }
}

for (const [name, proto] of protocols) {
  describe(`@dapr/dapr client over ${name}`, () => {
    let sc;
    let c;
    before(async () => {
      const dir = tempDir();
      const secrets = path.join(dir, "secrets.json");
      writeFileSync(secrets, JSON.stringify({ "db-password": "s3cret", nested: { user: "ann" } }));
      sc = await sidecar({
        appId: `js-client-${name}`,
        resources: {
          "state.yaml": component("statestore", "state.sqlite", { connectionString: path.join(dir, "state.db") }),
          "secrets.yaml": component("secrets", "secretstores.local.file", { secretsFile: secrets, nestedSeparator: ":" }),
          "lock.yaml": component("lockstore", "lock.sqlite", { connectionString: path.join(dir, "lock.db") }),
        },
      });
      c = client(sc, proto);
      await c.start();
    });
    after(async () => {
      await c?.stop();
    });

    test("state: save, get, bulk get, ETags, transaction, delete", () =>
      withOutput([sc], async () => {
        await c.state.save("statestore", [
          { key: "order-1", value: { item: "widget", qty: 2 } },
          { key: "order-2", value: "plain text" },
        ]);
        assert.deepEqual(await c.state.get("statestore", "order-1"), { item: "widget", qty: 2 });
        assert.equal(await c.state.get("statestore", "order-2"), "plain text");

        const bulk = await c.state.getBulk("statestore", ["order-1", "order-2", "missing"]);
        const byKey = Object.fromEntries(bulk.map((r) => [r.key, r]));
        assert.deepEqual(byKey["order-1"].data, { item: "widget", qty: 2 });
        assert.equal(byKey["order-2"].data, "plain text");
        assert.ok(byKey["order-1"].etag, "bulk get returns an ETag");
        assert.ok(!byKey.missing?.data, "a missing key has no data");

        // A write with the current ETag succeeds; a stale one is refused.
        const etag = byKey["order-1"].etag;
        await c.state.save("statestore", [{ key: "order-1", value: { item: "widget", qty: 3 }, etag }]);
        // The HTTP client reports the refusal in its result, the gRPC
        // client throws daprd's Aborted.
        const stale = await c.state.save("statestore", [{ key: "order-1", value: { qty: 99 }, etag }]).catch((e) => ({ error: e }));
        assert.ok(stale.error, "a save with a stale ETag reports an error");
        assert.match(String(stale.error.message ?? stale.error), /etag mismatch/);
        assert.deepEqual(await c.state.get("statestore", "order-1"), { item: "widget", qty: 3 });

        // The SDK's gRPC client sends a transaction's values as given
        // (Buffer.from), so they must be strings there.
        const gadget = proto === CommunicationProtocolEnum.GRPC ? JSON.stringify({ item: "gadget" }) : { item: "gadget" };
        await c.state.transaction("statestore", [
          { operation: "upsert", request: { key: "order-3", value: gadget } },
          { operation: "delete", request: { key: "order-2" } },
        ]);
        assert.deepEqual(await c.state.get("statestore", "order-3"), { item: "gadget" });
        assert.ok(!(await c.state.get("statestore", "order-2")), "the transaction deleted order-2");

        await c.state.delete("statestore", "order-1");
        assert.ok(!(await c.state.get("statestore", "order-1")), "order-1 is deleted");
      }));

    test("state: an unknown store is an error", async () => {
      await assert.rejects(c.state.get("nostore", "k"));
    });

    test("secrets: get one, nested key, bulk", () =>
      withOutput([sc], async () => {
        assert.deepEqual(await c.secret.get("secrets", "db-password"), { "db-password": "s3cret" });
        assert.deepEqual(await c.secret.get("secrets", "nested:user"), { "nested:user": "ann" });
        const all = await c.secret.getBulk("secrets");
        assert.deepEqual(all["db-password"], { "db-password": "s3cret" });
        await assert.rejects(c.secret.get("secrets", "no-such-secret"));
      }));

    test("locks: one owner at a time", () =>
      withOutput([sc], async () => {
        const res = `res-${name}`;
        assert.equal((await c.lock.lock("lockstore", res, "owner-a", 30)).success, true);
        assert.equal((await c.lock.lock("lockstore", res, "owner-b", 30)).success, false);
        // status 0 is SUCCESS, 2 LOCK_BELONGS_TO_OTHERS in Dapr's UnlockResponse.
        assert.equal((await c.lock.unlock("lockstore", res, "owner-b")).status, 2);
        assert.equal((await c.lock.unlock("lockstore", res, "owner-a")).status, 0);
        assert.equal((await c.lock.lock("lockstore", res, "owner-b", 30)).success, true);
      }));

    test("metadata: app id and components", () =>
      withOutput([sc], async () => {
        const md = await c.metadata.get();
        assert.equal(md.id, `js-client-${name}`);
        const types = Object.fromEntries(md.components.map((x) => [x.name, x.type]));
        assert.equal(types.statestore, "state.sqlite");
        assert.equal(types.secrets, "secretstores.local.file");
        assert.equal(types.lockstore, "lock.sqlite");
      }));
  });

  describe(`@dapr/dapr server (app) over ${name}`, () => {
    let app;
    let appSidecar;
    let callerSidecar;
    let server;
    let caller;
    const received = [];
    before(async () => {
      const dir = tempDir();
      const registry = path.join(dir, "nameresolution.db");
      const config = path.join(dir, "config.yaml");
      writeFileSync(config, `apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: js
spec:
  nameResolution:
    component: sqlite
    configuration:
      connectionString: ${JSON.stringify(registry)}
      updateInterval: 1s
`);
      app = `js-app-${name}`;
      const appPort = await freePort();
      appSidecar = await sidecar({
        appId: app,
        appPort,
        appProtocol: name,
        resources: { "pubsub.yaml": component("pubsub", "pubsub.in-memory") },
        args: ["--config", config],
      });
      server = new DaprServer({
        serverHost: "127.0.0.1",
        serverPort: String(appPort),
        communicationProtocol: proto,
        clientOptions: { daprHost: "127.0.0.1", daprPort: String(proto === CommunicationProtocolEnum.HTTP ? appSidecar.httpPort : appSidecar.grpcPort), communicationProtocol: proto },
        logger,
      });
      await server.invoker.listen("hello", async (data) => {
        const body = typeof data.body === "string" ? JSON.parse(data.body) : data.body;
        return { greeting: `hello ${body.name}`, via: name };
      }, { method: HttpMethod.POST });
      await server.pubsub.subscribe("pubsub", "orders", async (data) => {
        received.push(data);
      });
      await server.start();
      callerSidecar = await sidecar({ appId: `js-caller-${name}`, args: ["--config", config] });
      caller = client(callerSidecar, proto);
      await caller.start();
    });
    after(async () => {
      await caller?.stop();
      // The SDK's gRPC server closes only once its clients hung up: stop
      // the app's sidecar first.
      await appSidecar?.stop();
      await server?.stop();
    });

    test("service invocation through two sidecars reaches the SDK app", () =>
      withOutput([appSidecar, callerSidecar], async () => {
        const res = await eventually("the app to be resolvable", 20_000, () =>
          caller.invoker.invoke(app, "hello", HttpMethod.POST, { name: "mecha" }));
        assert.deepEqual(res, { greeting: "hello mecha", via: name });
      }));

    test("pub/sub: an event published with the SDK reaches the SDK subscriber", () =>
      withOutput([appSidecar], async () => {
        // The sidecar reads the app's subscriptions once the app listens.
        await eventually("the subscription", 20_000, async () => {
          const md = await (await fetch(`http://127.0.0.1:${appSidecar.httpPort}/v1.0/metadata`)).json();
          return md.subscriptions?.some((s) => s.topic === "orders");
        });
        await server.client.pubsub.publish("pubsub", "orders", { orderId: 7, item: "widget" });
        await server.client.pubsub.publish("pubsub", "orders", { orderId: 8 });
        await eventually("two events", 10_000, () => received.length >= 2);
        await sleep(200); // room for a wrong redelivery to show
        assert.deepEqual(received.map((e) => e.orderId).sort(), [7, 8]);
        assert.equal(received.find((e) => e.orderId === 7).item, "widget");
      }));
  });
}

// Counter is an actor written with the JS SDK: a count kept in actor
// state, saved by the SDK's state manager through the sidecar.
class CounterActor extends AbstractActor {
  async incr() {
    const sm = this.getStateManager();
    const n = ((await sm.tryGetState("count"))[1] ?? 0) + 1;
    await sm.setState("count", n);
    return n;
  }

  async count() {
    return (await this.getStateManager().tryGetState("count"))[1] ?? 0;
  }
}

describe("@dapr/dapr actors", () => {
  test("an SDK actor behind one sidecar, called through another: turn-based increments and state", async () => {
    const placement = await startPlacement();
    procs.push(placement);
    const dir = tempDir();
    const store = component("statestore", "state.sqlite", { connectionString: path.join(dir, "actors.db"), actorStateStore: "true" });
    const appPort = await freePort();
    const host = await sidecar({
      appId: "js-actors",
      appPort,
      resources: { "statestore.yaml": store },
      args: ["--placement-host-address", placement.address],
    });
    const server = new DaprServer({
      serverHost: "127.0.0.1",
      serverPort: String(appPort),
      communicationProtocol: CommunicationProtocolEnum.HTTP,
      clientOptions: { daprHost: "127.0.0.1", daprPort: String(host.httpPort), communicationProtocol: CommunicationProtocolEnum.HTTP },
      logger,
    });
    await server.actor.init();
    await server.actor.registerActor(CounterActor);
    await server.start();
    const caller = await sidecar({ appId: "js-actor-caller", args: ["--placement-host-address", placement.address] });
    const c = client(caller, CommunicationProtocolEnum.HTTP);
    try {
      await withOutput([placement, host, caller], async () => {
        const proxy = new ActorProxyBuilder(CounterActor, c).build(new ActorId("shared"));
        // The first call may race the table that names the host.
        await eventually("a first actor call", 20_000, async () => (await proxy.count()) === 0);
        const results = await Promise.all(Array.from({ length: 50 }, () => proxy.incr()));
        // One call at a time per actor: every increment saw a distinct count.
        assert.deepEqual([...results].sort((a, b) => a - b), Array.from({ length: 50 }, (_, i) => i + 1));
        assert.equal(await proxy.count(), 50);
        const other = new ActorProxyBuilder(CounterActor, c).build(new ActorId("other"));
        assert.equal(await other.incr(), 1);
        // The state is in the actor state store, readable through the API.
        const r = await fetch(`http://127.0.0.1:${host.httpPort}/v1.0/actors/CounterActor/shared/state/count`);
        assert.equal(r.status, 200);
        assert.equal(await r.json(), 50);
      });
    } finally {
      await server.stop();
    }
  });
});
