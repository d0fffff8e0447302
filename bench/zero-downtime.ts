/**
 * Zero downtime: failed requests per release with traffic control and without it (the
 * baseline, measured in the same run on the same fleet), and the time draining adds per batch
 * against the configured deregistration delay.
 *
 * One local environment (three instances behind its HAProxy, canary of 1, batches of one),
 * a warm-up release v1, then releases alternating traffic control on and off while two bounded
 * request streams run through the load balancer (loopback only): quick GET /version requests,
 * and GET /slow?ms=SLOW requests that are still in flight when a batch starts to drain, so the
 * drain has something to wait for. Every answer other than 200, and every connection error,
 * counts as a failed request.
 *
 * Printed per release: requests, failed, failure rate, release wall time, drain time per batch.
 * Then the totals, the drain per batch against the deregistration delay (ZCP_LOCAL_DRAIN_TIMEOUT_S,
 * 10 s by default), and the wall-time ratio on/off (what traffic control costs). The last line
 * is the one a bench runner reads:
 *
 *   zero-downtime: failed requests per release 0.0 with traffic control, 12.5 without; drain per batch 0.52s (delay 10s)
 *
 * Usage: node dist/bench/zero-downtime.js [--rounds 2] [--slow-ms 500] [--instances 3]
 */
import { table } from "../deploy/view.js";
import { startLoad, type LoadResult } from "./lib/load.js";
import { LocalZcp } from "./lib/local-zcp.js";
import type { ReleaseSummary } from "../deploy/runner.js";

interface BenchArgs {
  rounds: number;
  slowMs: number;
  instances: number;
}

function parseArgs(argv: string[]): BenchArgs {
  const args: BenchArgs = { rounds: 2, slowMs: 500, instances: 3 };
  for (let i = 0; i < argv.length; i += 2) {
    const [flag, value] = [argv[i], argv[i + 1]];
    const n = Number(value);
    if (value === undefined) throw new Error(`${flag} needs a value`);
    if (flag === "--rounds" && Number.isInteger(n) && n >= 1 && n <= 10) args.rounds = n;
    else if (flag === "--slow-ms" && Number.isInteger(n) && n >= 0 && n <= 5000) args.slowMs = n;
    else if (flag === "--instances" && Number.isInteger(n) && n >= 2 && n <= 16) args.instances = n;
    else throw new Error(`bad argument ${flag} ${value} (--rounds 1..10, --slow-ms 0..5000, --instances 2..16)`);
  }
  return args;
}

interface Measured {
  version: string;
  trafficControl: boolean;
  requests: number;
  failed: number;
  wallMs: number;
  drainMs: number[];
  firstFailures: string[];
}

const s = (ms: number) => (ms / 1000).toFixed(2);
const mean = (xs: readonly number[]) => (xs.length === 0 ? 0 : xs.reduce((a, b) => a + b, 0) / xs.length);
const DRAIN_DELAY_S = Number(process.env.ZCP_LOCAL_DRAIN_TIMEOUT_S ?? 10);

async function releaseUnderLoad(env: LocalZcp, url: string, version: string, trafficControl: boolean, slowMs: number): Promise<Measured> {
  const quick = startLoad({ url: `${url}/version`, concurrency: 4, pauseMs: 25, maxRequests: 20000, maxMs: 300_000 });
  const slow = slowMs > 0 ? startLoad({ url: `${url}/slow?ms=${slowMs}`, concurrency: 2, pauseMs: 50, maxRequests: 2000, maxMs: 300_000, requestTimeoutMs: slowMs + 5000 }) : undefined;
  // Traffic flows before the release starts and for a moment after it ends.
  await new Promise((r) => setTimeout(r, 1000));
  const started = performance.now();
  const run = await env.run(["release", "--env", "local", "--version", version, "--skip-image", "--json"], trafficControl ? {} : { ZCP_LOCAL_TRAFFIC_CONTROL: "off" });
  const wallMs = performance.now() - started;
  await new Promise((r) => setTimeout(r, 1000));
  const results: LoadResult[] = [await quick.stop(), ...(slow ? [await slow.stop()] : [])];
  if (run.code !== 0) throw new Error(`release ${version} exited ${run.code}: ${run.lines.slice(-5).map((l) => l.text).join(" | ")}`);
  const summary = JSON.parse(run.stdout) as ReleaseSummary;
  const expected = trafficControl ? "haproxy" : "none";
  if (summary.trafficControl !== expected) throw new Error(`release ${version}: traffic control ${summary.trafficControl}, expected ${expected}`);
  return {
    version,
    trafficControl,
    requests: results.reduce((a, r) => a + r.sent, 0),
    failed: results.reduce((a, r) => a + r.failed, 0),
    wallMs,
    drainMs: summary.batchDrainMs,
    firstFailures: [...new Set(results.flatMap((r) => r.failures.map((f) => f.error.replace(/\s+/g, " ").slice(0, 70))))].slice(0, 2),
  };
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const base = new LocalZcp({ instances: args.instances, batch: "1" });
  const measured: Measured[] = [];
  try {
    await base.prepare();
    const status = JSON.parse((await base.run(["status", "--env", "local", "--json"])).stdout) as { loadBalancer?: { url: string } };
    const url = status.loadBalancer?.url;
    if (!url) throw new Error("the local environment reports no load balancer");
    await base.release("v1", ["--skip-image"]);
    console.log(`N=${args.instances} behind ${url}; warm-up v1 done; ${args.rounds} round(s) of traffic control on, then off; slow requests ${args.slowMs} ms`);
    let v = 2;
    for (let round = 0; round < args.rounds; round++) {
      for (const on of [true, false]) {
        // The same fleet and balancer; only the traffic-control switch differs.
        const m = await releaseUnderLoad(base, url, `v${v++}`, on, args.slowMs);
        measured.push(m);
        console.log(
          `${m.version} traffic control ${on ? "on " : "off"}: ${m.requests} requests, ${m.failed} failed` +
            `${m.firstFailures.length ? ` (${m.firstFailures.join("; ")})` : ""}, release ${s(m.wallMs)} s, drain per batch ${m.drainMs.map(s).join(" / ") || "-"} s`,
        );
      }
    }
  } finally {
    await base.down();
  }

  const on = measured.filter((m) => m.trafficControl);
  const off = measured.filter((m) => !m.trafficControl);
  const failedPer = (ms: Measured[]) => mean(ms.map((m) => m.failed));
  const rate = (ms: Measured[]) => ms.reduce((a, m) => a + m.failed, 0) / Math.max(1, ms.reduce((a, m) => a + m.requests, 0));
  const drains = on.flatMap((m) => m.drainMs);
  console.log("");
  console.log(
    table(
      ["traffic control", "releases", "requests", "failed per release", "failure rate", "release s (mean)", "drain per batch s (mean / max)"],
      [
        ["on", String(on.length), String(on.reduce((a, m) => a + m.requests, 0)), failedPer(on).toFixed(1), `${(rate(on) * 100).toFixed(2)}%`, s(mean(on.map((m) => m.wallMs))), `${s(mean(drains))} / ${s(Math.max(0, ...drains))}`],
        ["off (baseline)", String(off.length), String(off.reduce((a, m) => a + m.requests, 0)), failedPer(off).toFixed(1), `${(rate(off) * 100).toFixed(2)}%`, s(mean(off.map((m) => m.wallMs))), "-"],
      ],
    ),
  );
  console.log(
    `drain per batch: mean ${s(mean(drains))} s, max ${s(Math.max(0, ...drains))} s against a deregistration delay of ${DRAIN_DELAY_S} s ` +
      `(ratio ${(mean(drains) / 1000 / DRAIN_DELAY_S).toFixed(3)}); release wall time on/off ${(mean(on.map((m) => m.wallMs)) / Math.max(1, mean(off.map((m) => m.wallMs)))).toFixed(2)}`,
  );
  console.log(
    `zero-downtime: failed requests per release ${failedPer(on).toFixed(1)} with traffic control, ${failedPer(off).toFixed(1)} without; ` +
      `drain per batch ${s(mean(drains))}s (delay ${DRAIN_DELAY_S}s)`,
  );
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exitCode = 1;
});
