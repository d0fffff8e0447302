/**
 * The rollout with traffic control and alarm gates, with a transport that plays the agent's
 * part and a recording traffic controller that plays the load balancer's (no AWS, no
 * processes): the order of drain / deploy / restore, the minimum healthy share, and the
 * release stopping and rolling back on an alarm.
 */
import { expect } from "chai";
import { maxOutOfService, planBatches, rollout, type RolloutDeps, type RolloutSettings } from "../../deploy/steps/rollout.js";
import type { TrafficController } from "../../deploy/traffic/controller.js";
import type { AlarmGate } from "../../deploy/traffic/alarm-gate.js";
import type { AgentParams, InstanceOutcome, Transport } from "../../deploy/transport.js";
import { ReleaseFailedError } from "../../shared/errors.js";

const SHA = "b".repeat(64);
const params = (version: string): AgentParams => ({
  app: "web",
  version,
  artifact: `s3://bucket/releases/web/${version}.tar.gz`,
  sha256: SHA,
  appDir: "/opt/web",
  appUser: "web",
  service: "web",
  processManager: "supervisor",
  healthUrl: "http://127.0.0.1:8080/health",
  healthTimeoutS: 5,
  keepReleases: 3,
});

/** The load balancer's view: which instances are in it, and every call in order. */
class RecordingBalancer implements TrafficController {
  readonly kind = "haproxy" as const;
  readonly events: string[] = [];
  readonly inTraffic: Set<string>;
  /** Instances the balancer reports unhealthy whatever happens. */
  readonly unhealthy = new Set<string>();
  /** Instances that never become healthy again after a restore. */
  readonly neverHealthy = new Set<string>();
  constructor(ids: readonly string[]) {
    this.inTraffic = new Set(ids);
  }
  async healthyCount(ids: readonly string[]) {
    return ids.filter((id) => this.inTraffic.has(id) && !this.unhealthy.has(id)).length;
  }
  async drain(ids: readonly string[]) {
    this.events.push(`drain ${ids.join(",")}`);
    for (const id of ids) this.inTraffic.delete(id);
  }
  async restore(ids: readonly string[]) {
    this.events.push(`restore ${ids.join(",")}`);
    for (const id of ids) if (!this.neverHealthy.has(id)) this.inTraffic.add(id);
    const bad = ids.filter((id) => this.neverHealthy.has(id));
    if (bad.length > 0) throw new Error(`${bad.join(", ")} unhealthy`);
  }
}

/** Every instance deploys fine; each agent run is recorded in the balancer's event list. */
function fleet(balancer: RecordingBalancer, ids: readonly string[]) {
  const running = new Map(ids.map((id) => [id, "v1"]));
  const transport: Transport = {
    kind: "local",
    async runAgent(batch, p: AgentParams): Promise<InstanceOutcome[]> {
      // The point of traffic control: no instance restarts while it still receives traffic.
      const serving = batch.filter((id) => balancer.inTraffic.has(id));
      balancer.events.push(`deploy ${p.version} ${batch.join(",")}${serving.length > 0 ? ` WHILE SERVING ${serving.join(",")}` : ""}`);
      return batch.map((id) => {
        const previous = running.get(id) ?? null;
        running.set(id, p.version);
        return {
          instanceId: id,
          ok: true,
          status: "deployed",
          result: { status: "deployed", version: p.version, previous, previous_sha256: SHA, duration_ms: 5 },
          message: `deployed ${p.version}`,
          durationMs: 5,
        };
      });
    },
  };
  return { transport, running };
}

function deps(transport: Transport, extra: Partial<RolloutDeps> = {}): RolloutDeps {
  let clock = 0;
  return {
    transport,
    paramsFor: async (v) => params(v),
    sleep: async (ms) => {
      clock += ms;
    },
    now: () => clock,
    log: () => undefined,
    ...extra,
  };
}

const SETTINGS: RolloutSettings = { canary: 1, batch: "2", soakSeconds: 30, maxErrors: 0, commandTimeoutS: 60, minHealthyPercent: 50 };

async function failure(p: Promise<unknown>): Promise<ReleaseFailedError> {
  try {
    await p;
  } catch (err) {
    expect(err).to.be.instanceOf(ReleaseFailedError);
    return err as ReleaseFailedError;
  }
  throw new Error("the release did not fail");
}

describe("rollout with traffic control (recording balancer, agent played by the transport)", function () {
  it("takes every batch out of traffic before its deploy and puts it back after", async function () {
    const ids = ["i1", "i2", "i3", "i4", "i5"];
    const lb = new RecordingBalancer(ids);
    const { transport } = fleet(lb, ids);
    const result = await rollout(ids, "v2", SETTINGS, deps(transport, { traffic: lb }));
    expect(lb.events).to.deep.equal([
      "drain i1",
      "deploy v2 i1",
      "restore i1",
      "drain i2,i3",
      "deploy v2 i2,i3",
      "restore i2,i3",
      "drain i4,i5",
      "deploy v2 i4,i5",
      "restore i4,i5",
    ]);
    expect(result.batchDrainMs).to.have.length(3);
    expect([...lb.inTraffic].sort()).to.deep.equal(ids);
  });

  it("caps batches so that minHealthyPercent of the fleet stays in service; never below one at a time", function () {
    const ids = Array.from({ length: 10 }, (_, i) => `i${i}`);
    expect(maxOutOfService(10, 80)).to.equal(2);
    expect(planBatches(ids, 0, "50%", 80).map((b) => b.length)).to.deep.equal([2, 2, 2, 2, 2]);
    expect(planBatches(ids, 3, "50%", 90).map((b) => b.length)).to.deep.equal(Array(10).fill(1));
    expect(maxOutOfService(3, 100)).to.equal(1);
    expect(planBatches(ids, 1, "50%", 0).map((b) => b.length)).to.deep.equal([1, 5, 4]);
  });

  it("waits for the rest of the fleet to be healthy, and stops with a readable reason when it is not", async function () {
    const ids = ["i1", "i2", "i3", "i4"];
    const lb = new RecordingBalancer(ids);
    lb.unhealthy.add("i3").add("i4");
    const { transport } = fleet(lb, ids);
    const err = await failure(rollout(ids, "v2", { ...SETTINGS, minHealthyPercent: 75, healthyWaitS: 10 }, deps(transport, { traffic: lb })));
    expect(err.message).to.match(/^release v2 failed in canary: only 1 of the 3 other instance\(s\) are healthy in the load balancer; minHealthyPercent 75 needs 3/);
    expect(lb.events, "nothing was taken out of traffic or deployed").to.deep.equal([]);
  });

  it("lets a batch with no healthy instance go even below the minimum (a first release starts with none healthy)", async function () {
    const ids = ["i1", "i2", "i3"];
    const lb = new RecordingBalancer(ids);
    for (const id of ids) lb.unhealthy.add(id);
    const { transport } = fleet(lb, ids);
    await rollout(ids, "v1", { ...SETTINGS, batch: "1", healthyWaitS: 0 }, deps(transport, { traffic: lb }));
    expect(lb.events.filter((e) => e.startsWith("deploy"))).to.have.length(3);
  });

  it("rolls back, out of traffic, when a batch does not become healthy in the load balancer", async function () {
    const ids = ["i1", "i2", "i3"];
    const lb = new RecordingBalancer(ids);
    lb.neverHealthy.add("i2");
    const { transport, running } = fleet(lb, ids);
    const err = await failure(rollout(ids, "v2", { ...SETTINGS, batch: "1" }, deps(transport, { traffic: lb })));
    expect(err.message).to.match(/^release v2 failed in batch 2\/3: i2 did not become healthy in the load balancer/);
    expect(lb.events.filter((e) => e.includes("WHILE SERVING")), "no deploy hit an instance in traffic").to.deep.equal([]);
    expect([...running.values()]).to.deep.equal(["v1", "v1", "v1"]);
    expect(lb.events).to.deep.equal([
      "drain i1",
      "deploy v2 i1",
      "restore i1",
      "drain i2",
      "deploy v2 i2",
      "restore i2",
      // The rollback, one instance at a time like the release; i2 is still out of traffic.
      "drain i1",
      "deploy v1 i1",
      "restore i1",
      "deploy v1 i2",
      "restore i2",
    ]);
    expect([...lb.inTraffic].sort()).to.deep.equal(["i1", "i3"]);
  });
});

describe("rollout with alarm gates (gate played by the test)", function () {
  /** A gate whose alarm goes into ALARM on the `firesAt`-th check. */
  function gate(firesAt: number): AlarmGate & { checks: number } {
    const g = {
      names: ["web-5xx"],
      checks: 0,
      async check() {
        g.checks++;
        return g.checks >= firesAt ? ["alarm web-5xx is in ALARM (5xx above 1%)"] : [];
      },
    };
    return g;
  }

  it("checks during the canary soak and stops there when an alarm fires, rolling the canary back", async function () {
    const ids = ["i1", "i2", "i3"];
    const lb = new RecordingBalancer(ids);
    const { transport, running } = fleet(lb, ids);
    const alarms = gate(3);
    const err = await failure(rollout(ids, "v2", { ...SETTINGS, soakSeconds: 30, alarmPollSeconds: 10 }, deps(transport, { traffic: lb, alarms })));
    expect(err.message).to.match(/^release v2 failed in canary: alarm web-5xx is in ALARM \(5xx above 1%\); every switched instance was rolled back/);
    // After the canary batch (1), then twice in the soak (2, 3): the third check fired.
    expect(alarms.checks).to.equal(3);
    expect([...running.entries()]).to.deep.equal([["i1", "v1"], ["i2", "v1"], ["i3", "v1"]]);
    expect(lb.events).to.deep.equal(["drain i1", "deploy v2 i1", "restore i1", "drain i1", "deploy v1 i1", "restore i1"]);
  });

  it("checks after each batch and rolls every switched instance back in batches, out of traffic", async function () {
    const ids = ["i1", "i2", "i3", "i4", "i5"];
    const lb = new RecordingBalancer(ids);
    const { transport, running } = fleet(lb, ids);
    // Checks: after canary, 3 in the soak, after batch 2 → fires after batch 2 (5th check).
    const alarms = gate(5);
    const err = await failure(rollout(ids, "v2", { ...SETTINGS, soakSeconds: 30, alarmPollSeconds: 10 }, deps(transport, { traffic: lb, alarms })));
    expect(err.message).to.match(/^release v2 failed in batch 2\/3: alarm web-5xx is in ALARM/);
    expect([...running.values()]).to.deep.equal(["v1", "v1", "v1", "v1", "v1"]);
    expect(lb.events.filter((e) => e.includes("WHILE SERVING"))).to.deep.equal([]);
    expect(lb.events.slice(6)).to.deep.equal(["drain i1,i2", "deploy v1 i1,i2", "restore i1,i2", "drain i3", "deploy v1 i3", "restore i3"]);
    expect([...lb.inTraffic].sort()).to.deep.equal(ids);
  });

  it("a release without alarms soaks in one sleep and never asks a gate", async function () {
    const ids = ["i1", "i2"];
    const lb = new RecordingBalancer(ids);
    const { transport } = fleet(lb, ids);
    const slept: number[] = [];
    await rollout(ids, "v2", SETTINGS, deps(transport, { traffic: lb, sleep: async (ms) => void slept.push(ms) }));
    expect(slept).to.deep.equal([30_000]);
  });
});
