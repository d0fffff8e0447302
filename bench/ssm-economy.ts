/**
 * SSM API economy: how many SSM calls one release costs, through the real rollout path —
 * `rollout()` (deploy/steps/rollout.ts) with the real `SsmTransport` — against the SSM simulator
 * (tests/fixtures/aws/ssm-simulator.ts) in simulated time: each instance's agent runs a seeded
 * random 5–60 s, 2 % of the instances are offline (PingStatus ConnectionLost), every API is
 * throttled by a token bucket, and the transport's sleeps move the clock instead of waiting.
 * Canary of 1, then batches of 25%, production polling settings (first delay 2 s, at most
 * 15 s between polls); maxErrors tolerates the offline share, so a release can finish.
 *
 * Checked and printed per fleet size N:
 *   - SendCommand calls per batch, against the ceiling ceil(batch size / 50);
 *   - status calls per poll: ListCommandInvocations pages per command per poll (one page holds
 *     50 instances, so this stays at 1 however large the fleet) and per poll round;
 *   - total calls and calls per instance, throttled refusals, and whether the release finished
 *     (every online instance deployed, every offline one reported by id).
 *
 * The last line is the one a bench runner reads:
 *
 *   ssm-economy: N=1000 calls per instance X.XX (SendCommand Y, status Z)
 *
 * Usage: node dist/bench/ssm-economy.js [--sizes 10,100,1000,5000] [--seed S]
 */
import { SSMClient } from "@aws-sdk/client-ssm";
import { rollout } from "../deploy/steps/rollout.js";
import { SsmTransport } from "../deploy/transports/ssm.js";
import { MAX_INSTANCE_IDS_PER_COMMAND } from "../deploy/commands/ssm.js";
import type { AgentParams, Transport } from "../deploy/transport.js";
import { table } from "../deploy/view.js";
import { SsmSimulator, seededRandom, type SimCall, type SimInstance, type SsmSimulatorOptions } from "../tests/fixtures/aws/ssm-simulator.js";

type SsmCall = SimCall;

/** Share of instances whose SSM agent is offline when the release starts. */
const OFFLINE_SHARE = 0.02;
/**
 * Token buckets per API, in the range of SSM's default request quotas (Service Quotas, "Systems
 * Manager endpoints and quotas"): a few requests a second with short bursts.
 */
const THROTTLE: NonNullable<SsmSimulatorOptions["throttle"]> = {
  SendCommand: { ratePerSecond: 5, burst: 10 },
  ListCommandInvocations: { ratePerSecond: 20, burst: 40 },
  GetCommandInvocation: { ratePerSecond: 20, burst: 40 },
  ListCommands: { ratePerSecond: 10, burst: 20 },
  DescribeInstanceInformation: { ratePerSecond: 10, burst: 20 },
  CancelCommand: { ratePerSecond: 5, burst: 10 },
};

interface BenchArgs {
  sizes: number[];
  seed: number;
}

function parseArgs(argv: string[]): BenchArgs {
  const args: BenchArgs = { sizes: [10, 100, 1000, 5000], seed: 1 };
  for (let i = 0; i < argv.length; i += 2) {
    const [flag, value] = [argv[i], argv[i + 1]];
    if (value === undefined) throw new Error(`${flag} needs a value`);
    if (flag === "--sizes") {
      args.sizes = value.split(",").map(Number);
      if (args.sizes.some((n) => !Number.isInteger(n) || n < 1)) throw new Error("--sizes: positive whole numbers, comma separated");
    } else if (flag === "--seed") {
      args.seed = Number(value);
      if (!Number.isInteger(args.seed)) throw new Error("--seed: a whole number");
    } else {
      throw new Error(`unknown argument ${flag}`);
    }
  }
  return args;
}

const SETTINGS = { canary: 1, batch: "25%", soakSeconds: 0, commandTimeoutS: 600 };

function paramsFor(version: string): AgentParams {
  return {
    app: "bench",
    version,
    artifact: `s3://zcp-bench-artifacts/releases/bench/${version}.tar.gz`,
    sha256: "0123456789abcdef".repeat(4),
    appDir: "/srv/bench",
    appUser: "bench",
    service: "bench",
    processManager: "supervisor",
    healthUrl: "http://127.0.0.1:8080/health",
    healthTimeoutS: 30,
    keepReleases: 5,
  };
}

function instanceIds(n: number): string[] {
  return Array.from({ length: n }, (_, k) => `i-${(0x1000 + k).toString(16).padStart(17, "0")}`);
}

interface Economy {
  n: number;
  batchSizes: number[];
  calls: SsmCall[];
  /** Simulated time the rollout took, and the sum over batches of its slowest instance. */
  rolloutMs: number;
  boundMs: number;
  offline: number;
  /** Every online instance deployed and every offline one reported undeliverable. */
  finished: boolean;
  error?: string;
}

async function measure(n: number, seed: number): Promise<Economy> {
  let t = Date.UTC(2026, 0, 1);
  let round = 0;
  const client = new SSMClient({
    region: "us-east-1",
    // Never reached: the mock replaces `send`. A discard port on loopback, should one slip through.
    endpoint: "http://127.0.0.1:9",
    credentials: { accessKeyId: "bench", secretAccessKey: "bench" },
    maxAttempts: 1,
  });
  const ids = instanceIds(n);
  const pick = seededRandom(seed * 31 + n);
  // The canary stays online, so every size gets past it.
  const offline = new Set(ids.slice(1).filter(() => pick() < OFFLINE_SHARE));
  const instances: Record<string, SimInstance> = Object.fromEntries(
    ids.map((id) => [id, { version: "v1", ...(offline.has(id) ? { ping: "ConnectionLost" as const } : {}) }]),
  );
  const sim = new SsmSimulator({ now: () => t, random: seededRandom(seed * 7919 + n), instances, throttle: THROTTLE });
  const mock = sim.attach(client);
  const jitter = seededRandom(seed);
  const ssm = new SsmTransport({
    ssm: client,
    // Mocked clients skip the SDK's retry middleware: the simulator answers both.
    sendCommandClient: client,
    documentName: "zcp-bench-dev-deploy",
    pacing: {
      now: () => t,
      random: jitter,
      // Every sleep of the transport ends one poll round (a throttled call's retry wait included).
      sleep: async (ms) => {
        t += ms;
        sim.label("round", ++round);
      },
    },
  });
  const batchSizes: number[] = [];
  // Delegates to the real transport; only labels the calls with the batch they belong to.
  const labelled: Transport = {
    kind: ssm.kind,
    runAgent: async (ids, params, opts) => {
      batchSizes.push(ids.length);
      sim.label("batch", batchSizes.length);
      round = 0;
      sim.label("round", 0);
      return await ssm.runAgent(ids, params, opts);
    },
  };
  const start = t;
  try {
    // Each batch tolerates its offline instances (2 %, and the seeded spread across batches).
    const maxErrors = Math.max(1, Math.ceil(n * OFFLINE_SHARE * 2));
    const result = await rollout(ids, "v2", { ...SETTINGS, maxErrors }, {
      transport: labelled,
      paramsFor: async (v) => paramsFor(v),
      now: () => t,
      sleep: async (ms) => {
        t += ms;
      },
      log: () => undefined,
    });
    const notOk = result.instances.filter((i) => i.status !== "deployed");
    const finished = notOk.every((i) => offline.has(i.instanceId) && i.status === "undeliverable");
    return { n, batchSizes, calls: sim.calls, rolloutMs: t - start, boundMs: result.batchAgentMs.reduce((a, b) => a + b, 0), offline: offline.size, finished };
  } catch (err) {
    return { n, batchSizes, calls: sim.calls, rolloutMs: t - start, boundMs: 0, offline: offline.size, finished: false, error: (err as Error).message.split("\n")[0] ?? "" };
  } finally {
    mock.restore();
    client.destroy();
  }
}

function count<T>(items: readonly T[], key: (item: T) => string): Map<string, number> {
  const out = new Map<string, number>();
  for (const it of items) out.set(key(it), (out.get(key(it)) ?? 0) + 1);
  return out;
}

interface Figures {
  sends: number;
  sendsWithinCeiling: boolean;
  maxSendsPerBatch: number;
  lists: number;
  gets: number;
  describes: number;
  preflight: number;
  throttled: number;
  status: number;
  total: number;
  pollRounds: number;
  maxPagesPerCommandPoll: number;
  maxStatusPerRound: number;
  meanStatusPerRound: number;
  /** Status calls made before the first wait of a batch, when nothing can have finished. */
  immediate: number;
}

function figures(e: Economy): Figures {
  const of = (name: SsmCall["name"]) => e.calls.filter((c) => c.name === name);
  // The ceiling is about commands made: a throttled attempt made none.
  const sendsPerBatch = count(of("SendCommand").filter((c) => !c.throttled), (c) => String(c.labels.batch));
  const sendsWithinCeiling = e.batchSizes.every(
    (size, i) => (sendsPerBatch.get(String(i + 1)) ?? 0) <= Math.ceil(size / MAX_INSTANCE_IDS_PER_COMMAND),
  );
  const statusCalls = e.calls.filter((c) => c.name !== "SendCommand" && c.name !== "CancelCommand" && c.name !== "DescribeInstanceInformation");
  const perRound = count(statusCalls, (c) => `${c.labels.batch}/${c.labels.round}`);
  const perCommandPoll = count(of("ListCommandInvocations"), (c) => `${c.labels.batch}/${c.labels.round}/${c.commandId}`);
  return {
    sends: of("SendCommand").filter((c) => !c.throttled).length,
    sendsWithinCeiling,
    maxSendsPerBatch: Math.max(...sendsPerBatch.values()),
    lists: of("ListCommandInvocations").length,
    gets: of("GetCommandInvocation").length,
    describes: of("ListCommands").length,
    preflight: of("DescribeInstanceInformation").length,
    throttled: e.calls.filter((c) => c.throttled).length,
    status: statusCalls.length,
    total: e.calls.length,
    pollRounds: perRound.size,
    maxPagesPerCommandPoll: Math.max(...perCommandPoll.values()),
    maxStatusPerRound: Math.max(...perRound.values()),
    meanStatusPerRound: statusCalls.length / perRound.size,
    immediate: statusCalls.filter((c) => c.labels.round === 0).length,
  };
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const rows: { e: Economy; f: Figures }[] = [];
  for (const n of args.sizes) {
    const e = await measure(n, args.seed);
    rows.push({ e, f: figures(e) });
  }
  console.log(
    `rollout: canary ${SETTINGS.canary}, batches of ${SETTINGS.batch}; each agent runs 5–60 s; ${OFFLINE_SHARE * 100} % offline; every API throttled (seed ${args.seed})`,
  );
  console.log(
    table(
      ["N", "batches", "batch size", "SendCommand", "max/batch", "≤ ceil(size/50)", "poll rounds", "ListInvocations", "pages/command/poll", "status/poll max", "status/poll mean", "Get", "ListCommands", "DescribeInstanceInformation", "throttled", "total", "per instance", "offline", "finished"],
      rows.map(({ e, f }) => [
        String(e.n),
        String(e.batchSizes.length),
        `${e.batchSizes[0] ?? 0}+${Math.max(...e.batchSizes.slice(1), 0)}`,
        String(f.sends),
        String(f.maxSendsPerBatch),
        f.sendsWithinCeiling ? "yes" : "NO",
        String(f.pollRounds),
        String(f.lists),
        String(f.maxPagesPerCommandPoll),
        String(f.maxStatusPerRound),
        f.meanStatusPerRound.toFixed(2),
        String(f.gets),
        String(f.describes),
        String(f.preflight),
        String(f.throttled),
        String(f.total),
        (f.total / e.n).toFixed(2),
        String(e.offline),
        e.finished ? "yes" : `NO${e.error ? ` (${e.error})` : ""}`,
      ]),
    ),
  );
  for (const { e, f } of rows) {
    console.log(
      `N=${e.n}: simulated rollout ${(e.rolloutMs / 1000).toFixed(0)} s against ${(e.boundMs / 1000).toFixed(0)} s of slowest instances ` +
        `(the rest is waiting for the next poll); ${f.immediate} of ${f.status} status calls came right after SendCommand, before any wait`,
    );
  }
  const violations = rows.filter(({ e, f }) => !e.finished || !f.sendsWithinCeiling || f.maxPagesPerCommandPoll > 1);
  if (violations.length > 0) {
    console.log(`ssm-economy: unfinished release or call budget exceeded at N=${violations.map((v) => v.e.n).join(", ")}`);
    process.exitCode = 1;
  }
  const headline = rows.find((r) => r.e.n === 1000) ?? rows[rows.length - 1];
  if (!headline) throw new Error("no size measured");
  console.log(
    `ssm-economy: N=${headline.e.n} calls per instance ${(headline.f.total / headline.e.n).toFixed(2)} ` +
      `(SendCommand ${headline.f.sends}, status ${headline.f.status}); releases finished ${rows.filter((r) => r.e.finished).length}/${rows.length}`,
  );
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exitCode = 1;
});
