// Harness for the @dapr/dapr compatibility tests: starts the real mecha
// binary (MECHA_BIN, else built from the repository once per run) as
// sidecars and placement nodes on free loopback ports, each with a private
// HOME and resources directory, and stops exactly the processes it started,
// by PID, when the test ends.
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, writeFileSync, rmSync, mkdirSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const tempDirs = [];
let builtBin;

// mechaBin is the binary under test: MECHA_BIN, or one built from this
// repository into a temporary directory the first time it is asked for.
export function mechaBin() {
  if (process.env.MECHA_BIN) return path.resolve(process.env.MECHA_BIN);
  if (!builtBin) {
    const dir = tempDir("mecha-js-bin-");
    builtBin = path.join(dir, "mecha");
    execFileSync("go", ["build", "-o", builtBin, "./cmd/mecha"], { cwd: repoRoot, stdio: "inherit" });
  }
  return builtBin;
}

export function tempDir(prefix = "mecha-js-") {
  const d = mkdtempSync(path.join(os.tmpdir(), prefix));
  tempDirs.push(d);
  return d;
}

// removeTempDirs deletes every directory tempDir made (call once, at the end).
export function removeTempDirs() {
  for (const d of tempDirs.splice(0)) rmSync(d, { recursive: true, force: true });
}

// freePort asks the kernel for a free loopback port. Another process may
// take it before the sidecar binds it; startSidecar retries on that.
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

// component renders a Dapr Component resource.
export function component(name, type, metadata = {}) {
  let y = `apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: ${name}\nspec:\n  type: ${type}\n  version: v1\n`;
  const keys = Object.keys(metadata);
  if (keys.length > 0) {
    y += "  metadata:\n";
    for (const k of keys.sort()) y += `  - name: ${k}\n    value: ${JSON.stringify(String(metadata[k]))}\n`;
  }
  return y;
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// eventually polls fn until it returns a truthy value or timeoutMs passes.
export async function eventually(what, timeoutMs, fn) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${last.message}` : ""}`);
    await sleep(50);
  }
}

// Proc is a child process this harness started; stop() ends it by PID
// (SIGTERM, then SIGKILL after 10 s) and is idempotent.
class Proc {
  constructor(name, args, env, cwd) {
    this.name = name;
    this.output = "";
    this.child = spawn(mechaBin(), args, { env, cwd, stdio: ["ignore", "pipe", "pipe"] });
    this.exited = new Promise((resolve) => this.child.on("exit", (code, signal) => resolve({ code, signal })));
    this.done = false;
    this.exited.then(() => (this.done = true));
    for (const s of [this.child.stdout, this.child.stderr]) s.on("data", (b) => (this.output += b.toString()));
  }

  async stop() {
    if (this.done) return;
    this.child.kill("SIGTERM");
    const t = setTimeout(() => this.child.kill("SIGKILL"), 10_000);
    await this.exited;
    clearTimeout(t);
  }
}

function childEnv(home) {
  const env = { ...process.env, HOME: home, MECHA_CONTROL_PLANE: "off" };
  for (const k of ["DAPR_API_TOKEN", "APP_API_TOKEN", "NAMESPACE", "DAPR_HTTP_PORT", "DAPR_GRPC_PORT"]) delete env[k];
  return env;
}

async function waitHTTP(proc, url, status, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (proc.done) throw new Error(`${proc.name} exited:\n${proc.output}`);
    try {
      const r = await fetch(url);
      if (r.status === status) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`${proc.name}: ${url} did not answer ${status}:\n${proc.output}`);
    await sleep(50);
  }
}

// startSidecar runs `mecha sidecar` with the given resources (file name →
// YAML) and extra flags, and waits until its outbound health check passes.
// The caller registers `after(() => sc.stop())` (or uses a Cluster).
export async function startSidecar({ appId, appPort, appProtocol, resources = {}, args = [] }) {
  const resDir = tempDir("mecha-js-res-");
  for (const [name, y] of Object.entries(resources)) writeFileSync(path.join(resDir, name), y);
  for (let attempt = 1; ; attempt++) {
    const httpPort = await freePort();
    let grpcPort = await freePort();
    while (grpcPort === httpPort) grpcPort = await freePort();
    const home = tempDir("mecha-js-home-");
    const a = ["sidecar", "--app-id", appId, "--dapr-http-port", String(httpPort), "--dapr-grpc-port", String(grpcPort),
      "--resources-path", resDir, "--metrics-port", "0"];
    if (appPort) a.push("--app-port", String(appPort));
    if (appProtocol) a.push("--app-protocol", appProtocol);
    a.push(...args);
    const p = new Proc(`sidecar ${appId}`, a, childEnv(home), home);
    try {
      await waitHTTP(p, `http://127.0.0.1:${httpPort}/v1.0/healthz/outbound`, 204, 30_000);
    } catch (e) {
      await p.stop();
      if (attempt < 3 && p.output.includes("address already in use")) continue;
      throw e;
    }
    p.httpPort = httpPort;
    p.grpcPort = grpcPort;
    p.resourcesDir = resDir;
    return p;
  }
}

// startPlacement runs `mecha control-plane` as a standalone placement node
// and returns it with its address once /healthz answers 200.
export async function startPlacement() {
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const healthz = await freePort();
    const home = tempDir("mecha-js-cp-");
    mkdirSync(home, { recursive: true });
    const p = new Proc("placement", ["control-plane", "--placement-port", String(port), "--healthz-port", String(healthz)], childEnv(home), home);
    try {
      await waitHTTP(p, `http://127.0.0.1:${healthz}/healthz`, 200, 30_000);
    } catch (e) {
      await p.stop();
      if (attempt < 3 && p.output.includes("address already in use")) continue;
      throw e;
    }
    p.address = `127.0.0.1:${port}`;
    return p;
  }
}
