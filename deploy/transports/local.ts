/**
 * The local transport: runs the same agent script SSM runs, once per instance of a local
 * fleet (deploy/local/fleet.ts), with the same parameters. Each instance decides where its app
 * lives and which port it answers on, so the app dir and health URL are the instance's own.
 *
 * Like SSM, an agent run belongs to the instance, not to the caller: it runs in its own
 * process group with its output in a file, so a runner killed mid-release never leaves an
 * instance half-switched — the agent finishes (or rolls back) on its own.
 */
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import {
  agentEnvironment,
  agentSucceeded,
  outcomeFromAgent,
  parseAgentResult,
  type AgentParams,
  type InstanceOutcome,
  type RunOptions,
  type Transport,
} from "../transport.js";
import * as fleet from "../local/fleet.js";
import { toolsDir } from "../repo.js";

/** How long a timed-out agent gets to roll its instance back after SIGTERM. */
const TIMEOUT_GRACE_MS = 90_000;

export interface LocalTransportOptions {
  fleetRoot: string;
  /** At most this many agents at once. @default 16 */
  concurrency?: number;
}

/**
 * What prepare-image treats as / on a local instance: a private directory of the instance, so
 * that preparing a local instance for an image never clears this machine's own machine-id,
 * SSH host keys or shell histories.
 */
function localImageRoot(inst: fleet.LocalInstance): string {
  const dir = path.join(inst.dir, "image-root");
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  return dir;
}

export function createLocalTransport(opts: LocalTransportOptions): Transport {
  return new LocalTransport(opts);
}

class LocalTransport implements Transport {
  readonly kind = "local" as const;
  constructor(private readonly opts: LocalTransportOptions) {}

  async runAgent(instanceIds: readonly string[], params: AgentParams, run: RunOptions): Promise<InstanceOutcome[]> {
    const limit = Math.max(1, this.opts.concurrency ?? 16);
    const results: InstanceOutcome[] = [];
    const queue = [...instanceIds];
    const worker = async () => {
      for (let id = queue.shift(); id !== undefined; id = queue.shift()) {
        results.push(await this.runOne(id, params, run));
      }
    };
    await Promise.all(Array.from({ length: Math.min(limit, queue.length) }, worker));
    return instanceIds.map((id) => results.find((r) => r.instanceId === id) as InstanceOutcome);
  }

  private async runOne(instanceId: string, params: AgentParams, run: RunOptions): Promise<InstanceOutcome> {
    const started = Date.now();
    let inst: fleet.LocalInstance;
    try {
      inst = fleet.loadInstance(this.opts.fleetRoot, instanceId);
    } catch (err) {
      return { instanceId, ok: false, status: "undeliverable", message: `no local instance ${instanceId}: ${(err as Error).message}`, durationMs: 0 };
    }
    run.onProgress?.({ instanceId, phase: "sent", elapsedMs: 0 });
    const env = agentEnvironment({
      ...params,
      appDir: inst.appDir,
      appUser: inst.appUser,
      service: inst.service,
      healthUrl: fleet.healthUrl(inst),
    });
    const outFile = path.join(inst.dir, "logs", `agent-${Date.now()}-${process.pid}.out`);
    fs.mkdirSync(path.dirname(outFile), { recursive: true });
    const fd = fs.openSync(outFile, "w");
    const child = spawn("bash", [fleet.agentScriptPath()], {
      env: {
        ...process.env,
        PATH: [path.join(toolsDir(), "venv", "bin"), process.env.PATH ?? "/usr/bin:/bin"].join(path.delimiter),
        ...fleet.agentInstanceEnv(inst),
        ZCP_IMAGE_ROOT: localImageRoot(inst),
        ...env,
      },
      stdio: ["ignore", fd, fd],
      detached: true,
    });
    fs.closeSync(fd);
    let timedOut = false;
    const exit = await new Promise<{ code: number | null; timedOut: boolean }>((resolve) => {
      const timer = setTimeout(() => {
        timedOut = true;
        try {
          if (child.pid) process.kill(-child.pid, "SIGTERM");
        } catch {
          // gone
        }
        // A signalled agent puts its instance back on the previous release; wait (bounded) so
        // the batch's outcome describes an instance that is whole again.
        const grace = setTimeout(() => resolve({ code: null, timedOut: true }), TIMEOUT_GRACE_MS);
        child.once("close", () => clearTimeout(grace));
      }, run.timeoutS * 1000);
      child.on("error", () => {
        clearTimeout(timer);
        resolve({ code: null, timedOut: false });
      });
      child.on("close", (code) => {
        clearTimeout(timer);
        resolve({ code, timedOut });
      });
    });
    const output = fs.readFileSync(outFile, "utf8");
    fs.rmSync(outFile, { force: true });
    const durationMs = Date.now() - started;
    const result = parseAgentResult(output);
    if (exit.timedOut) {
      run.onProgress?.({ instanceId, phase: "done", status: "timed_out", elapsedMs: durationMs });
      const after = result ? `; after the signal it reported ${result.status} (${String(result.message ?? "")})` : "";
      return { instanceId, ok: false, status: "timed_out", message: `agent timed out after ${run.timeoutS}s${after}`, durationMs };
    }
    const status = outcomeFromAgent(exit.code ?? -1, result);
    const ok = agentSucceeded(result, params);
    run.onProgress?.({ instanceId, phase: "done", status, elapsedMs: durationMs });
    const detail = typeof result?.message === "string" && result.message ? `: ${result.message}` : "";
    const message = result
      ? `${result.status} ${result.version} (previous ${result.previous ?? "none"})${detail}`
      : `agent exited ${exit.code} without a result: ${output.trim().split("\n").slice(-3).join(" | ").slice(0, 300)}`;
    return {
      instanceId,
      ok,
      status,
      ...(result ? { result } : {}),
      ...(exit.code !== null ? { exitCode: exit.code } : {}),
      message,
      durationMs,
    };
  }
}
