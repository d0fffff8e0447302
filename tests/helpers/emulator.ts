/**
 * Starts and stops the AWS emulator (moto server) on a free 127.0.0.1 port for tests.
 *
 *   const emu = await startEmulator();   // in before()
 *   await emu.reset();                   // in beforeEach(): every test starts from empty AWS
 *   await emu.stop();                    // in after()
 *
 * Suites that only need an empty AWS take the process's one shared emulator instead:
 *
 *   const emu = await sharedEmulator();  // in before(): empty, whoever used it before
 *
 * It starts once per mocha process (one per parallel worker) and ends with the process, so
 * a run does not pay a moto start for every file; its `stop()` does nothing.
 *
 * `emu.env` holds the variables an AWS SDK client or the AWS CLI needs to talk to it
 * (dummy static credentials that only the emulator accepts, the endpoint, the region).
 */
import { spawn, type ChildProcess } from "node:child_process";
import * as net from "node:net";
import * as path from "node:path";
import * as fs from "node:fs";
import { createAwsClients, type AwsClients } from "../../deploy/aws/clients.js";

export interface Emulator {
  readonly endpoint: string;
  readonly port: number;
  readonly env: Record<string, string>;
  reset(): Promise<void>;
  stop(): Promise<void>;
  /** Kills the server without cleanup, for fault tests; `restart()` brings it back on the same port. */
  kill(): Promise<void>;
  restart(): Promise<void>;
}

export const REPO_ROOT = findRepoRoot(__dirname);

function findRepoRoot(from: string): string {
  let dir = from;
  while (!fs.existsSync(path.join(dir, "package.json")) || dir.endsWith(`${path.sep}dist`)) {
    const up = path.dirname(dir);
    if (up === dir) throw new Error(`no package.json above ${from}`);
    dir = up;
  }
  return dir;
}

export async function freePort(): Promise<number> {
  return await new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

function motoServerBinary(): string {
  const local = path.join(REPO_ROOT, ".tools", "venv", "bin", "moto_server");
  if (fs.existsSync(local)) return local;
  return "moto_server";
}

async function waitForHttp(url: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastErr: unknown;
  while (Date.now() < deadline) {
    try {
      const res = await fetch(url);
      if (res.status < 500) return;
    } catch (err) {
      lastErr = err;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`emulator at ${url} did not answer within ${timeoutMs}ms: ${String(lastErr)}`);
}

/** The environment for AWS clients pointed at an emulator endpoint. No real credential exists here. */
export function emulatorEnv(endpoint: string): Record<string, string> {
  return {
    AWS_ENDPOINT_URL: endpoint,
    AWS_REGION: "us-east-1",
    AWS_DEFAULT_REGION: "us-east-1",
    // The emulator accepts any static pair; these are its documented placeholders, not keys.
    AWS_ACCESS_KEY_ID: "testing",
    AWS_SECRET_ACCESS_KEY: "testing",
    AWS_EC2_METADATA_DISABLED: "true",
  };
}

let shared: Promise<Emulator> | undefined;

/** The process-wide emulator, reset to empty for the caller; see the top of this file. */
export async function sharedEmulator(): Promise<Emulator> {
  shared ??= startEmulator({ detach: true });
  const emu = await shared;
  await emu.reset();
  return { ...emu, stop: async () => undefined };
}

export async function startEmulator(opts: { port?: number; detach?: boolean } = {}): Promise<Emulator> {
  const port = opts.port ?? (await freePort());
  const endpoint = `http://127.0.0.1:${port}`;
  let child: ChildProcess | undefined;

  const launch = async () => {
    child = spawn(motoServerBinary(), ["-H", "127.0.0.1", "-p", String(port)], {
      stdio: ["ignore", "ignore", "pipe"],
      env: { ...process.env, MOTO_CALL_RESET_API: "true" },
    });
    let stderr = "";
    child.stderr?.on("data", (d: Buffer) => {
      stderr = (stderr + d.toString()).slice(-4000);
    });
    if (opts.detach) {
      // Neither the process nor its pipe keeps mocha alive; the exit hook below ends it.
      const c = child;
      c.unref();
      (c.stderr as unknown as { unref?: () => void } | null)?.unref?.();
      process.once("exit", () => {
        if (c.exitCode === null) c.kill("SIGTERM");
      });
      // A parallel mocha worker may be ended by a signal, which skips "exit".
      process.once("SIGTERM", () => {
        if (c.exitCode === null) c.kill("SIGTERM");
        process.exit(143);
      });
    }
    const exited = new Promise<never>((_, reject) =>
      child?.once("exit", (code) => reject(new Error(`moto_server exited with ${code}: ${stderr}`))),
    );
    exited.catch(() => undefined);
    await Promise.race([waitForHttp(`${endpoint}/moto-api/`, 30000), exited]);
  };
  const killChild = async () => {
    const c = child;
    child = undefined;
    if (!c || c.exitCode !== null) return;
    await new Promise<void>((resolve) => {
      c.once("exit", () => resolve());
      c.kill("SIGTERM");
      setTimeout(() => c.kill("SIGKILL"), 3000).unref();
    });
  };

  await launch();
  return {
    endpoint,
    port,
    env: emulatorEnv(endpoint),
    async reset() {
      const res = await fetch(`${endpoint}/moto-api/reset`, { method: "POST" });
      if (!res.ok) throw new Error(`emulator reset failed: HTTP ${res.status}`);
    },
    stop: killChild,
    kill: killChild,
    restart: async () => {
      await killChild();
      await launch();
    },
  };
}

/** The runner's own SDK clients, pointed at an emulator with its throwaway credentials. */
export function emulatorClients(emu: Emulator): AwsClients {
  return createAwsClients(
    {
      region: "us-east-1",
      endpoint: emu.endpoint,
      credentials: { accessKeyId: emu.env.AWS_ACCESS_KEY_ID ?? "", secretAccessKey: emu.env.AWS_SECRET_ACCESS_KEY ?? "" },
    },
    {},
  );
}
