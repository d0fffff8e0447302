/**
 * Engine overhead: a release that changes nothing against the cheapest thing the engine can
 * do, in the same run.
 *
 *   - no-op release: on a one-instance local environment, `zcp release --version v1
 *     --skip-image` once (it deploys), then again with the same version: the agent reports
 *     `unchanged` and nothing in the fleet moves. Timed by the runner's own `durationMs`
 *     (account check, packaging, upload check, latest pointer read, stack, `up`).
 *   - empty up: an inline program that declares nothing, `up` through the automation API on
 *     a temporary `file://` backend; timed from opening the stack to the end of `up`, the span
 *     `durationMs` gives the release's own stack.
 *
 * One untimed run of each first (the first release deploys; the first empty up creates the
 * stack), then three timed runs of each, alternating; the best of each counts. The last line
 * is the one a bench runner reads:
 *
 *   engine-overhead: ratio X.XX (no-op release / empty up), A s vs B s
 *
 * Usage: node dist/bench/engine-overhead.js [--runs R]
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { performance } from "node:perf_hooks";
import { LocalWorkspace } from "@pulumi/pulumi/automation/index.js";
import { useProjectTools } from "../deploy/runner.js";
import { LocalZcp, type ZcpRun } from "./lib/local-zcp.js";
import { phaseTable } from "./lib/phases.js";

function parseArgs(argv: string[]): { runs: number } {
  const args = { runs: 3 };
  for (let i = 0; i < argv.length; i += 2) {
    const value = Number(argv[i + 1]);
    if (argv[i] !== "--runs") throw new Error(`unknown argument ${argv[i]}`);
    if (!Number.isInteger(value) || value < 1) throw new Error("--runs needs a positive whole number");
    args.runs = value;
  }
  return args;
}

/** An empty stack on its own file backend; `up()` returns the milliseconds one update took. */
async function emptyStack(root: string): Promise<{ up(): Promise<number> }> {
  const backend = path.join(root, "state");
  const workDir = path.join(root, "work");
  fs.mkdirSync(backend, { recursive: true });
  fs.mkdirSync(workDir, { recursive: true });
  const projectName = "zcp-bench-empty";
  return {
    async up() {
      const started = performance.now();
      const stack = await LocalWorkspace.createOrSelectStack(
        { stackName: "bench", projectName, program: async () => ({}) },
        {
          workDir,
          projectSettings: { name: projectName, runtime: "nodejs", backend: { url: `file://${backend}` } },
          envVars: {
            PULUMI_BACKEND_URL: `file://${backend}`,
            PULUMI_SKIP_UPDATE_CHECK: "true",
            PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION: "true",
            PULUMI_CONFIG_PASSPHRASE: process.env.PULUMI_CONFIG_PASSPHRASE ?? "zcp-local-only",
          },
        },
      );
      await stack.up({ onOutput: () => undefined });
      return performance.now() - started;
    },
  };
}

const s = (ms: number) => (ms / 1000).toFixed(2);

async function main(): Promise<void> {
  const { runs } = parseArgs(process.argv.slice(2));
  // The same pulumi the runner uses.
  useProjectTools();
  const env = new LocalZcp({ instances: 1 });
  const emptyRoot = fs.mkdtempSync(path.join(os.tmpdir(), "zcp-bench-empty-"));
  try {
    await env.prepare();
    const empty = await emptyStack(emptyRoot);
    const first = await env.release("v1", ["--skip-image"]);
    const firstEmpty = await empty.up();
    console.log(`first release v1 (deploys): ${s(first.summary.durationMs)} s; first empty up (creates the stack): ${s(firstEmpty)} s`);

    const releases: number[] = [];
    const walls: number[] = [];
    let fastest: ZcpRun | undefined;
    const ups: number[] = [];
    for (let run = 1; run <= runs; run++) {
      const { run: r, summary } = await env.release("v1", ["--skip-image"]);
      const moved = summary.instances.filter((i) => i.status !== "unchanged");
      if (moved.length > 0) throw new Error(`the no-op release changed ${moved.map((i) => `${i.instanceId} (${i.status})`).join(", ")}`);
      if (releases.every((ms) => summary.durationMs < ms)) fastest = r;
      releases.push(summary.durationMs);
      walls.push(r.wallMs);
      ups.push(await empty.up());
      console.log(
        `run ${run}: no-op release ${s(summary.durationMs)} s (process ${s(r.wallMs)} s, FleetDeployment ${s(summary.fleetDurationMs)} s, ` +
          `agent: ${summary.instances.map((i) => i.status).join(", ")}), empty up ${s(ups[ups.length - 1] ?? 0)} s`,
      );
    }
    const a = Math.min(...releases);
    const b = Math.min(...ups);
    console.log(`no-op release: ${s(a)} s best of ${runs} (process wall ${s(Math.min(...walls))} s); empty up: ${s(b)} s best of ${runs}`);
    if (fastest) console.log(`where the fastest no-op release spent its time:\n${phaseTable(fastest.lines, fastest.wallMs)}`);
    console.log(`engine-overhead: ratio ${(a / b).toFixed(2)} (no-op release / empty up), ${s(a)} s vs ${s(b)} s`);
  } finally {
    await env.down();
    fs.rmSync(emptyRoot, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exitCode = 1;
});
