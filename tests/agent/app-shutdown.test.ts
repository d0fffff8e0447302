/**
 * The example app's graceful shutdown, on the real process: SIGTERM (what supervisor and
 * systemd send on a restart) lets a request already in flight finish with its answer, stops
 * accepting new connections, and exits 0. Without it, a drained instance would still cut the
 * requests it was serving when the deploy restarts it.
 */
import { expect } from "chai";
import { spawn, type ChildProcess } from "node:child_process";
import * as path from "node:path";
import { freePort, REPO_ROOT } from "../helpers/emulator.js";
import { waitFor } from "../helpers/zcp.js";

const SERVER = path.join(REPO_ROOT, "examples", "app", "server.py");

async function startApp(): Promise<{ child: ChildProcess; port: number; exited: Promise<number | null>; output: () => string }> {
  const port = await freePort();
  const child = spawn("python3", [SERVER], {
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", APP_PORT: String(port), APP_BIND: "127.0.0.1", PYTHONUNBUFFERED: "1" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  child.stdout?.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr?.on("data", (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  await waitFor(
    "the example app to answer",
    async () => (await fetch(`http://127.0.0.1:${port}/health`, { signal: AbortSignal.timeout(500) }).catch(() => undefined))?.status === 200,
    15_000,
  );
  return { child, port, exited, output: () => out };
}

describe("example app shutdown on SIGTERM (real process)", function () {
  const started: ChildProcess[] = [];
  after(function () {
    for (const c of started) if (c.exitCode === null && c.pid) process.kill(c.pid, "SIGKILL");
  });

  it("answers the request in flight, refuses new connections, and exits 0", async function () {
    const app = await startApp();
    started.push(app.child);
    const inFlight = fetch(`http://127.0.0.1:${app.port}/slow?ms=1500`, { signal: AbortSignal.timeout(10_000) }).then(
      async (r) => ({ status: r.status, body: (await r.json()) as { slept_ms: number } }),
      (err: unknown) => ({ status: 0, body: { error: String(err) } }),
    );
    await new Promise((r) => setTimeout(r, 400));
    app.child.kill("SIGTERM");
    await new Promise((r) => setTimeout(r, 500));
    // Still serving the slow request, but no longer listening.
    expect(app.child.exitCode, "the process waits for its request").to.equal(null);
    const late = await fetch(`http://127.0.0.1:${app.port}/health`, { signal: AbortSignal.timeout(2000) }).then(
      (r) => `HTTP ${r.status}`,
      (err: unknown) => String((err as { cause?: { code?: string } }).cause?.code ?? err),
    );
    expect(late).to.equal("ECONNREFUSED");
    const answer = await inFlight;
    expect(answer, app.output()).to.deep.equal({ status: 200, body: { status: "ok", version: "dev", slept_ms: 1500 } });
    expect(await app.exited, app.output()).to.equal(0);
  });

  it("bounds /slow and rejects a malformed duration", async function () {
    const app = await startApp();
    started.push(app.child);
    const bad = await fetch(`http://127.0.0.1:${app.port}/slow?ms=soon`);
    expect(bad.status).to.equal(400);
    app.child.kill("SIGTERM");
    expect(await app.exited).to.equal(0);
  });
});
