/**
 * Release overhead: the wall time of `zcp release` on the local environment against the
 * lower bound measured in the same run — the sum over batches of the slowest instance's own
 * agent time (`sum(batchAgentMs)` of the `--json` summary). A batch cannot end before its
 * slowest agent does, and batches run one after another, so no runner can do better.
 *
 * For each fleet size N: a fresh local environment (canary of 1, then batches of 25%, no
 * soak), a warm-up release v1 (the first deploy installs dependencies), then the measured
 * release v2, an upgrade. Printed per N: wall time, lower bound, overhead (wall − bound),
 * batches, the ratio wall / bound, and the fleet-only ratio (FleetDeployment's own duration
 * / bound), which separates the rollout's overhead from the engine's and the packaging's.
 * Where the rest goes is read from the progress lines, stamped as they arrive
 * (bench/lib/phases.ts).
 *
 * The last line is the one a bench runner reads:
 *
 *   release-overhead: N=16 ratio X.XX (wall/lower bound), overhead Ys
 *
 * Usage: node dist/bench/release-overhead.js [--sizes 4,16,32] [--batch 25%]
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { table } from "../deploy/view.js";
import { readMarks, TIMINGS_ENV, type TimingMark } from "../deploy/timings.js";
import { breakdownOf, breakdownTable } from "./lib/breakdown.js";
import { LocalZcp, type ZcpRun } from "./lib/local-zcp.js";
import { phaseTable } from "./lib/phases.js";
import type { ReleaseSummary } from "../deploy/runner.js";

interface BenchArgs {
  sizes: number[];
  batch: string;
}

function parseArgs(argv: string[]): BenchArgs {
  const args: BenchArgs = { sizes: [4, 16, 32], batch: "25%" };
  for (let i = 0; i < argv.length; i += 2) {
    const [flag, value] = [argv[i], argv[i + 1]];
    if (value === undefined) throw new Error(`${flag} needs a value`);
    if (flag === "--sizes") {
      args.sizes = value.split(",").map(Number);
      if (args.sizes.some((n) => !Number.isInteger(n) || n < 1 || n > 64)) throw new Error("--sizes: whole numbers 1..64, comma separated");
    } else if (flag === "--batch") {
      args.batch = value;
    } else {
      throw new Error(`unknown argument ${flag}`);
    }
  }
  return args;
}

interface Measurement {
  n: number;
  run: ZcpRun;
  summary: ReleaseSummary;
  boundMs: number;
  marks: TimingMark[];
}

const s = (ms: number) => (ms / 1000).toFixed(1);

async function measure(n: number, batch: string): Promise<Measurement> {
  const env = new LocalZcp({ instances: n, batch });
  try {
    await env.prepare();
    const warm = await env.release("v1");
    console.log(`N=${n}: warm-up v1 in ${s(warm.run.wallMs)} s (${warm.summary.instances.length} instances, ${warm.summary.batchAgentMs.length} batches)`);
    const timings = path.join(env.workDir, "timings.jsonl");
    const { run, summary } = await env.release("v2", [], { [TIMINGS_ENV]: timings });
    const marks = readMarks(timings);
    fs.rmSync(timings, { force: true });
    const bad = summary.instances.filter((i) => i.status !== "deployed");
    if (bad.length > 0 || summary.instances.length !== n) {
      throw new Error(`N=${n}: v2 reached ${summary.instances.length - bad.length}/${n} instances as deployed`);
    }
    const boundMs = summary.batchAgentMs.reduce((a, b) => a + b, 0);
    return { n, run, summary, boundMs, marks };
  } finally {
    await env.down();
  }
}

function report(m: Measurement): void {
  const { run, summary, boundMs } = m;
  const batches = summary.batchAgentMs.length;
  console.log(`N=${m.n}: release v1 → v2, ${batches} batches (canary 1, then ${m.summary.instances.filter((i) => i.batch === 2).length} per batch)`);
  console.log(phaseTable(run.lines, run.wallMs));
  if (m.marks.length > 0) {
    console.log(`N=${m.n}: the same release from its timing marks (${TIMINGS_ENV}, exact to the millisecond):`);
    console.log(breakdownTable(breakdownOf(m.marks, run.startedAt, run.wallMs, summary.batchAgentMs), run.wallMs));
  }
  console.log(`  slowest agent per batch: ${summary.batchAgentMs.map((ms) => s(ms)).join(" + ")} = ${s(boundMs)} s`);
  console.log(
    `  wall ${s(run.wallMs)} s (runner's durationMs ${s(summary.durationMs)} s), FleetDeployment ${s(summary.fleetDurationMs)} s, ` +
      `lower bound ${s(boundMs)} s`,
  );
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const results: Measurement[] = [];
  for (const n of args.sizes) {
    const m = await measure(n, args.batch);
    report(m);
    results.push(m);
  }

  console.log("");
  console.log(
    table(
      ["N", "batches", "wall s", "bound s", "overhead s", "ratio", "fleet s", "fleet ratio", "fleet overhead/batch s"],
      results.map((m) => {
        const batches = m.summary.batchAgentMs.length;
        return [
          String(m.n),
          String(batches),
          s(m.run.wallMs),
          s(m.boundMs),
          s(m.run.wallMs - m.boundMs),
          (m.run.wallMs / m.boundMs).toFixed(2),
          s(m.summary.fleetDurationMs),
          (m.summary.fleetDurationMs / m.boundMs).toFixed(2),
          ((m.summary.fleetDurationMs - m.boundMs) / 1000 / batches).toFixed(2),
        ];
      }),
    ),
  );
  for (const m of results) {
    console.log(
      `release-overhead: N=${m.n} batches ${m.summary.batchAgentMs.length} wall ${s(m.run.wallMs)}s bound ${s(m.boundMs)}s ` +
        `overhead ${s(m.run.wallMs - m.boundMs)}s ratio ${(m.run.wallMs / m.boundMs).toFixed(2)} fleet-only ${(m.summary.fleetDurationMs / m.boundMs).toFixed(2)}`,
    );
  }
  const headline = results.find((m) => m.n === 16) ?? results[results.length - 1];
  if (!headline) throw new Error("no size measured");
  console.log(
    `release-overhead: N=${headline.n} ratio ${(headline.run.wallMs / headline.boundMs).toFixed(2)} (wall/lower bound), ` +
      `overhead ${s(headline.run.wallMs - headline.boundMs)}s`,
  );
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exitCode = 1;
});
