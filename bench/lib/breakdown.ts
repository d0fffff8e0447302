/**
 * Where the time of one `zcp release` goes, from the timing marks the runner and the engine's
 * provider host write when ZCP_TIMINGS_FILE is set (deploy/timings.ts). Unlike the progress
 * lines (bench/lib/phases.ts, good to ±0.2 s), the marks carry their own wall clock, so each
 * part is good to a millisecond.
 *
 * The rollout's own time above its lower bound is split per batch: for batch i, the gap from
 * the end of batch i−1's agents to the start of batch i's (the canary hook, the alarm gate,
 * progress), and the agents' span minus the slowest agent's own time (spawning, collecting).
 */
import { table } from "../../deploy/view.js";
import type { TimingMark } from "../../deploy/timings.js";

export interface BreakdownRow {
  part: string;
  ms: number;
  /** Runs while something else on the critical path does (not added to the total). */
  parallel?: boolean;
}

function find(marks: readonly TimingMark[], label: string, from = 0): TimingMark | undefined {
  return marks.slice(from).find((m) => m.label === label);
}

/** The summed time of every `<label>: start` … `<label>: end` pair whose label matches. */
function sumSpans(marks: readonly TimingMark[], label: RegExp): { ms: number; count: number } {
  const open = new Map<string, number>();
  let ms = 0;
  let count = 0;
  for (const m of marks) {
    const hit = /^(.*): (start|end)$/.exec(m.label);
    if (!hit?.[1] || !label.test(hit[1])) continue;
    if (hit[2] === "start") open.set(hit[1], m.t);
    else {
      const from = open.get(hit[1]);
      if (from !== undefined) {
        ms += m.t - from;
        count++;
        open.delete(hit[1]);
      }
    }
  }
  return { ms, count };
}

function span(marks: readonly TimingMark[], label: string): number | undefined {
  const a = find(marks, `${label}: start`);
  const b = find(marks, `${label}: end`);
  return a && b ? b.t - a.t : undefined;
}

/**
 * The rows of the breakdown. `startedAt` is when the command was spawned, `wallMs` how long
 * it ran, `batchAgentMs` the slowest agent of each batch (the release's summary).
 */
export function breakdownOf(marks: readonly TimingMark[], startedAt: number, wallMs: number, batchAgentMs: readonly number[]): BreakdownRow[] {
  const rows: BreakdownRow[] = [];
  const at = (label: string) => find(marks, label)?.t;
  const between = (part: string, a: number | undefined, b: number | undefined, parallel = false) => {
    if (a !== undefined && b !== undefined) rows.push({ part, ms: b - a, ...(parallel ? { parallel } : {}) });
  };
  const during = (part: string, label: string, parallel = false) => {
    const ms = span(marks, label);
    if (ms !== undefined) rows.push({ part, ms, ...(parallel ? { parallel } : {}) });
  };

  between("runner: spawn → Node.js process start", startedAt, at("runner: process start"));
  between("runner: Node.js start, CLI modules loaded", at("runner: process start"), at("runner: modules loaded"));
  between("runner: local environment checked (emulator, instances, HAProxy)", at("runner: modules loaded"), at("runner: environment resolved"));
  between("  emulator answers", at("runner: modules loaded"), at("local: emulator answers"), true);
  between("  app user", at("local: emulator answers"), at("local: app user known"), true);
  between("  bucket", at("local: app user known"), at("local: bucket checked"), true);
  between("  image parameter, launch template (base images when seeding)", at("local: bucket checked"), at("local: image parameter and launch template checked"), true);
  between("  instances (DescribeInstances)", at("local: image parameter and launch template checked"), at("local: instances listed"), true);
  between("  supervisords", at("local: instances listed"), at("local: supervisors checked"), true);
  between("  HAProxy", at("local: supervisors checked"), at("local: load balancer checked"), true);
  between("runner: from environment to account check", at("runner: environment resolved"), at("runner: account check: start"));
  during("runner: account check (STS)", "runner: account check");
  during("runner: session budget check", "runner: session check");
  between("runner: lock check, progress file", at("runner: session check: end"), at("runner: artifact: start"));
  during("  open release stack (alongside the artifact)", "runner: open release stack", true);
  between("  build: start → lockfiles read and checked", at("runner: build: start"), at("build: lockfiles read and checked"), true);
  during("  build: python3 --version", "build: python version", true);
  during("  build: pip --version", "build: pip version", true);
  during("  build: python and pip versions (one run)", "build: python and pip versions", true);
  during("  build: pip download (dependency resolution)", "build: pip download", true);
  during("  build: node dependencies", "build: node dependencies", true);
  during("  build: packaging and manifest", "build: package and manifest", true);
  during("  build, all of it", "runner: build", true);
  during("  upload (S3 PutObject, checks)", "runner: upload", true);
  during("runner: artifact (build and upload)", "runner: artifact");
  during("runner: latest pointer read", "runner: latest pointer read");
  between("runner: plan, stack ready", at("runner: latest pointer read: end"), at("runner: up start"));
  between("engine: up → provider host process start", at("runner: up start"), at("host: process start"));
  between("  Pulumi CLI start → the program runs (in the runner)", at("runner: up start"), at("engine: program starts"), true);
  between("  program → provider host started (providers serialised, plugin start)", at("engine: program starts"), at("host: process start"), true);
  between("engine: provider host loads its modules", at("host: process start"), at("host: step modules loaded"));
  between("engine: host loaded → Artifact step starts", at("host: step modules loaded"), at("step Artifact: start"));
  between("step Artifact", at("step Artifact: start"), at("step Artifact: end"));
  between("engine: Artifact → FleetDeployment", at("step Artifact: end"), at("step FleetDeployment: start"));
  between("fleet: discovery (DescribeInstances)", at("step FleetDeployment: start"), at("fleet: discovered"));
  between("fleet: latest pointer, transport", at("fleet: discovered"), at("fleet: transport and parameters ready"));

  // Batches: every `fleet: agents deploy ×n` span, in order.
  const starts = marks.filter((m) => /^fleet: agents deploy ×\d+: start$/.test(m.label));
  const ends = marks.filter((m) => /^fleet: agents deploy ×\d+: end$/.test(m.label));
  let previousEnd = at("fleet: transport and parameters ready");
  starts.forEach((s, i) => {
    const e = ends[i];
    if (!e) return;
    if (previousEnd !== undefined) rows.push({ part: i === 0 ? "fleet: → first batch" : `fleet: gap before batch ${i + 1}`, ms: s.t - previousEnd });
    const slowest = batchAgentMs[i] ?? 0;
    rows.push({ part: `fleet: batch ${i + 1}, slowest agent (the bound)`, ms: slowest });
    rows.push({ part: `fleet: batch ${i + 1}, agents' span above the slowest`, ms: e.t - s.t - slowest });
    previousEnd = e.t;
  });
  during("  of which the canary hook (prepare-image, CreateImage)", "fleet: canary hook (bake start)", true);
  during("  of which prepare-image on the canary", "fleet: agents prepare-image ×1", true);
  for (const what of ["drain", "restore"]) {
    const t = sumSpans(marks, new RegExp(`^fleet: traffic ${what} ×\\d+$`));
    if (t.count > 0) rows.push({ part: `  of which HAProxy ${what}, ${t.count} batches`, ms: t.ms, parallel: true });
  }
  between("fleet: last batch → rollout returned", previousEnd, at("fleet: rollout returned"));
  between("fleet: rollout returned → step end", at("fleet: rollout returned"), at("step FleetDeployment: end"));
  for (const [step, before] of [
    ["BakedImage", "FleetDeployment"],
    ["LaunchTemplateRelease", "BakedImage"],
    ["LatestPointer", "LaunchTemplateRelease"],
  ] as const) {
    between(`engine: ${before} → ${step}`, at(`step ${before}: end`), at(`step ${step}: start`));
    between(`step ${step}`, at(`step ${step}: start`), at(`step ${step}: end`));
  }
  between("engine: last step → up returns", at("step LatestPointer: end"), at("runner: up end"));
  between("runner: summary, exit", at("runner: up end"), startedAt + wallMs);
  return rows;
}

/** The rows as an indented table; parts that ran alongside the critical path are marked. */
export function breakdownTable(rows: readonly BreakdownRow[], wallMs: number, indent = "  "): string {
  const serial = rows.filter((r) => !r.parallel).reduce((a, r) => a + r.ms, 0);
  const body = rows.map((r) => [r.part, (r.ms / 1000).toFixed(3), r.parallel ? "(inside the row below/above)" : ""]);
  body.push(["sum of the serial parts", (serial / 1000).toFixed(3), `wall ${(wallMs / 1000).toFixed(3)}`]);
  return table(["part", "seconds", ""], body)
    .split("\n")
    .map((l) => `${indent}${l}`)
    .join("\n");
}
