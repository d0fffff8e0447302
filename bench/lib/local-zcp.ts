/**
 * Runs the real `zcp` command (bin/zcp → dist/deploy/cli.js) on a throwaway local environment,
 * the way tests/helpers/zcp.ts does for integration tests, with what benchmarks need on top:
 * every stderr line stamped with its arrival time, the `--json` summary parsed, and a cleanup
 * that runs even when the benchmark is interrupted.
 *
 * The local environment's apps listen on fixed 127.0.0.1 ports (18080 and up), so two local
 * environments on one machine collide. `prepare()` starts the environment and refuses to
 * measure when one of its ports already answers for someone else; scripts/bench.sh runs the
 * benchmarks in a private network namespace when the machine allows it, which avoids that.
 */
import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { performance } from "node:perf_hooks";
import { findRepoRoot } from "../../deploy/repo.js";
import type { ReleaseSummary } from "../../deploy/runner.js";

export interface TimedLine {
  /** Milliseconds since the command was started. */
  atMs: number;
  text: string;
}

export interface ZcpRun {
  args: readonly string[];
  code: number | null;
  stdout: string;
  /** stderr, line by line (progress goes there with --json). */
  lines: TimedLine[];
  /** From spawn to exit, as the person running the command waits for it. */
  wallMs: number;
  /** Wall clock at spawn, ms since the epoch (to place the command's timing marks). */
  startedAt: number;
}

export interface LocalZcpOptions {
  instances: number;
  /** `ZCP_LOCAL_BATCH`. @default "25%" */
  batch?: string;
  /** More environment for every command. @default none */
  env?: Record<string, string>;
}

const BIN = path.join(findRepoRoot(), "bin", "zcp");
const live = new Set<LocalZcp>();

/** An interrupted benchmark still stops the environments it started. */
function stopAllAndExit(signal: NodeJS.Signals): void {
  for (const env of live) env.downSync();
  process.exit(signal === "SIGINT" ? 130 : 143);
}
let handlersInstalled = false;
function installSignalHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  process.once("SIGINT", stopAllAndExit);
  process.once("SIGTERM", stopAllAndExit);
}

export class LocalZcp {
  readonly workDir: string;

  constructor(private readonly options: LocalZcpOptions) {
    this.workDir = fs.mkdtempSync(path.join(os.tmpdir(), "zcp-bench-"));
    // The app runs as another user when this runs as root: it must traverse the folder.
    fs.chmodSync(this.workDir, 0o755);
    live.add(this);
    installSignalHandlers();
  }

  env(): NodeJS.ProcessEnv {
    return {
      ...process.env,
      CI: "true",
      ZCP_WORK_DIR: this.workDir,
      ZCP_LOCAL_INSTANCES: String(this.options.instances),
      ZCP_LOCAL_BATCH: this.options.batch ?? "25%",
      ZCP_LOCAL_SOAK_S: "0",
      // Only an upper bound for an unhealthy app (the agent polls); generous, so a loaded
      // machine slows a benchmark down instead of failing it.
      ZCP_LOCAL_HEALTH_TIMEOUT_S: "30",
      ...this.options.env,
    };
  }

  /** Runs `zcp` with the environment's variables, plus `extraEnv` for this command only. */
  async run(args: readonly string[], extraEnv: Record<string, string> = {}): Promise<ZcpRun> {
    const startedAt = Date.now();
    const started = performance.now();
    const child = spawn(process.execPath, [BIN, ...args], { env: { ...this.env(), ...extraEnv }, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    const lines: TimedLine[] = [];
    let partial = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => {
      const atMs = performance.now() - started;
      const parts = (partial + d.toString()).split("\n");
      partial = parts.pop() ?? "";
      for (const text of parts) lines.push({ atMs, text });
    });
    const code = await new Promise<number | null>((resolve, reject) => {
      child.on("error", reject);
      child.on("close", (c) => resolve(c));
    });
    const wallMs = performance.now() - started;
    if (partial) lines.push({ atMs: wallMs, text: partial });
    return { args, code, stdout, lines, wallMs, startedAt };
  }

  /** Starts the environment (emulator, instances) and checks that its app ports are its own. */
  async prepare(): Promise<void> {
    this.check(await this.run(["status", "--env", "local", "--json"]));
    const state = JSON.parse(fs.readFileSync(path.join(this.workDir, "local", "state.json"), "utf8")) as {
      instances: { instanceId: string; port: number }[];
    };
    const taken: number[] = [];
    for (const i of state.instances) if (!(await portFree(i.port))) taken.push(i.port);
    if (taken.length > 0) {
      throw new Error(
        `127.0.0.1 port(s) ${taken.join(", ")} already answer for another process (another local environment?); ` +
          "the benchmark's instances need them. Stop it, or run through scripts/bench.sh, which isolates the network when it can.",
      );
    }
  }

  async release(
    version: string,
    extra: readonly string[] = [],
    extraEnv: Record<string, string> = {},
  ): Promise<{ run: ZcpRun; summary: ReleaseSummary }> {
    const run = this.check(await this.run(["release", "--env", "local", "--version", version, "--json", ...extra], extraEnv));
    return { run, summary: JSON.parse(run.stdout) as ReleaseSummary };
  }

  /**
   * Stops the environment (`zcp local down`, by the pids it recorded) and removes its folder.
   * When it cannot be stopped, the folder stays: it holds the record of what to stop.
   */
  async down(): Promise<void> {
    if (!live.has(this)) return;
    const run = await this.run(["local", "down"]).catch(() => undefined);
    this.afterDown(run?.code ?? null);
  }

  /** The same, synchronously, for a signal handler. */
  downSync(): void {
    if (!live.has(this)) return;
    this.afterDown(spawnSync(process.execPath, [BIN, "local", "down"], { env: this.env(), stdio: "ignore" }).status);
  }

  private afterDown(code: number | null): void {
    live.delete(this);
    if (code === 0) {
      fs.rmSync(this.workDir, { recursive: true, force: true });
    } else {
      console.error(`could not stop the local environment in ${this.workDir}; stop it with: ZCP_WORK_DIR=${this.workDir} bin/zcp local down`);
    }
  }

  private check(run: ZcpRun): ZcpRun {
    if (run.code === 0) return run;
    const tail = run.lines.slice(-15).map((l) => `  ${l.text}`).join("\n");
    throw new Error(`zcp ${run.args.join(" ")} exited ${run.code}:\n${tail}`);
  }
}

/** True when nothing listens on 127.0.0.1:port. */
export async function portFree(port: number): Promise<boolean> {
  return await new Promise((resolve) => {
    const srv = net.createServer();
    srv.once("error", () => resolve(false));
    srv.listen(port, "127.0.0.1", () => srv.close(() => resolve(true)));
  });
}
