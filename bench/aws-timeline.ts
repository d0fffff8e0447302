/**
 * AWS timeline: how long a release's two long steps take on AWS-like delays, with the image
 * baked from the canary while the fleet rolls (what `zcp release` does), started either as soon
 * as the canary is healthy (`zcp:image.bakeStart: canary`, the default) or once it has soaked
 * (`soak`), against the same release with the bake after the rollout (the order before),
 * measured in the same run.
 *
 * What runs is the release's own step code, FleetDeployment then BakedImage
 * (deploy/steps/*.ts, as the engine's provider host runs it), with the real SsmTransport and
 * the real image waiter, in simulated time (tests/fixtures/aws/sim-clock.ts):
 *   - SSM Run Command from tests/fixtures/aws/ssm-simulator.ts: each instance's run takes
 *     25–45 s (a ~5 s SSM round trip — delivery, start, result — plus a 20–40 s agent run),
 *     production polling (2 s first delay, at most 15 s between polls);
 *   - EC2 images from tests/fixtures/aws/ec2-image-simulator.ts: `pending` for the configured
 *     5–30 minutes after CreateImage, then `available`; the waiter polls every 5–30 s.
 * Canary 1, 60 s soak, batches of 25 %. The Artifact, LaunchTemplateRelease and LatestPointer
 * steps are a few API calls each (under a second on AWS) and are left out.
 *
 * Per fleet size, bake time and start point it prints: rollout (FleetDeployment), bake, when
 * the bake started, the overlapped release's wall time, the sequential one's, and the ratios
 * wall / max(rollout, bake) (goal ≤ 1.1), wall / floor, where the floor max(rollout, bake
 * start + bake) is the best a start point can do (an image needs an instance healthy on the
 * new version, so no bake can start before the canary is), and wall / (rollout + bake). The
 * last line is the one a bench runner reads (the default start point):
 *
 *   aws-timeline: N=16 bake 15min wall/max(rollout,bake) X.XX, wall/(rollout+bake) Y.YY
 *
 * Usage: node dist/bench/aws-timeline.js [--sizes 16,64] [--bake-minutes 5,15,30] [--seed S]
 */
import { SsmTransport } from "../deploy/transports/ssm.js";
import { table } from "../deploy/view.js";
import { simulateRelease, type SimReleaseResult } from "../tests/fixtures/release/sim-release.js";
import { SsmSimulator, seededRandom, type AgentRunContext, type AgentPlan } from "../tests/fixtures/aws/ssm-simulator.js";
import type { ImageBakeStart } from "../shared/config.js";

interface BenchArgs {
  sizes: number[];
  bakeMinutes: number[];
  seed: number;
}

function parseArgs(argv: string[]): BenchArgs {
  const args: BenchArgs = { sizes: [16, 64], bakeMinutes: [5, 15, 30], seed: 1 };
  const list = (flag: string, v: string, max: number) => {
    const out = v.split(",").map(Number);
    if (out.some((n) => !Number.isInteger(n) || n < 1 || n > max)) throw new Error(`${flag}: whole numbers 1..${max}, comma separated`);
    return out;
  };
  for (let i = 0; i < argv.length; i += 2) {
    const [flag, value] = [argv[i], argv[i + 1]];
    if (value === undefined) throw new Error(`${flag} needs a value`);
    if (flag === "--sizes") args.sizes = list(flag, value, 5000);
    else if (flag === "--bake-minutes") args.bakeMinutes = list(flag, value, 240);
    else if (flag === "--seed") {
      args.seed = Number(value);
      if (!Number.isInteger(args.seed)) throw new Error("--seed: a whole number");
    } else throw new Error(`unknown argument ${flag}`);
  }
  return args;
}

const SSM_ROUND_TRIP_MS = 5_000;
const AGENT_MIN_MS = 20_000;
const AGENT_MAX_MS = 40_000;

async function run(n: number, bakeMinutes: number, start: ImageBakeStart | "after-rollout", seed: number): Promise<SimReleaseResult> {
  let restore: (() => void) | undefined;
  try {
    const r = await simulateRelease({
      instances: n,
      overlap: start !== "after-rollout",
      ...(start !== "after-rollout" ? { bakeStart: start } : {}),
      bakeMs: bakeMinutes * 60_000,
      soakSeconds: 60,
      transport: (clock, clients, instanceIds) => {
        const agent = (ctx: AgentRunContext): AgentPlan =>
          ctx.instance.version === ctx.version
            ? { runMs: SSM_ROUND_TRIP_MS, end: "unchanged" }
            : { runMs: SSM_ROUND_TRIP_MS + AGENT_MIN_MS + Math.floor(ctx.random() * (AGENT_MAX_MS - AGENT_MIN_MS + 1)), end: "deployed" };
        const sim = new SsmSimulator({
          now: clock.now,
          random: seededRandom(seed * 7919 + n),
          instances: Object.fromEntries(instanceIds.map((id) => [id, { version: "v1" }])),
          agent,
        });
        const mock = sim.attach(clients.ssm);
        restore = () => mock.restore();
        return new SsmTransport({ ssm: clients.ssm, sendCommandClient: clients.ssm, documentName: "zcp-shop-prod-deploy", pacing: { now: clock.now, sleep: clock.sleep, random: seededRandom(seed) } });
      },
    });
    if (r.error) throw r.error;
    return r;
  } finally {
    restore?.();
  }
}

const min = (ms: number) => (ms / 60_000).toFixed(1);

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const rows: string[][] = [];
  const lines: string[] = [];
  for (const n of args.sizes) {
    for (const bake of args.bakeMinutes) {
      const sequential = await run(n, bake, "after-rollout", args.seed);
      for (const start of ["canary", "soak"] as const) {
        const overlapped = await run(n, bake, start, args.seed);
        const rollout = overlapped.fleetMs;
        const bakeMs = bake * 60_000;
        const lower = Math.max(rollout, bakeMs);
        const sum = rollout + bakeMs;
        const wall = overlapped.totalMs;
        // No bake can start before its start point: the floor of that start point.
        const floor = Math.max(rollout, (overlapped.createImageAt ?? 0) + bakeMs);
        rows.push([
          String(n),
          start,
          min(rollout),
          String(bake),
          min(overlapped.createImageAt ?? 0),
          min(wall),
          min(sequential.totalMs),
          (wall / lower).toFixed(2),
          (wall / floor).toFixed(2),
          (wall / sum).toFixed(2),
          (sequential.totalMs / sum).toFixed(2),
        ]);
        lines.push(
          `aws-timeline: N=${n} bake ${bake}min start ${start} rollout ${min(rollout)}min bake starts ${min(overlapped.createImageAt ?? 0)}min ` +
            `wall ${min(wall)}min sequential ${min(sequential.totalMs)}min ` +
            `wall/max(rollout,bake) ${(wall / lower).toFixed(2)} wall/(rollout+bake) ${(wall / sum).toFixed(2)} ` +
            `wall/max(rollout,start+bake) ${(wall / floor).toFixed(2)}`,
        );
      }
    }
  }
  console.log(
    table(
      ["N", "bake start", "rollout min", "bake min", "bake starts at min", "wall min", "sequential min", "wall/max", "wall/floor", "wall/sum", "sequential/sum"],
      rows,
    ),
  );
  for (const l of lines) console.log(l);
  const headline = lines.find((l) => l.startsWith("aws-timeline: N=16 bake 15min start canary")) ?? lines.find((l) => l.includes(" start canary "));
  if (!headline) throw new Error("nothing measured");
  const m = /wall\/max\(rollout,bake\) (\S+) wall\/\(rollout\+bake\) (\S+)/.exec(headline);
  const size = /N=(\d+) bake (\d+)min/.exec(headline);
  console.log(`aws-timeline: N=${size?.[1] ?? "?"} bake ${size?.[2] ?? "?"}min wall/max(rollout,bake) ${m?.[1] ?? "?"}, wall/(rollout+bake) ${m?.[2] ?? "?"}`);
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exitCode = 1;
});
