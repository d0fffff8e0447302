/**
 * SSM faults through the whole rollout: `rollout()` driving the real ssm transport against the
 * SSM simulator (mocked SSM, simulated time), which remembers what each instance runs. An instance SSM cannot reach or that
 * times out fails the release with its name and reason, every instance the release switched
 * goes back, and throttling bursts are absorbed by the retry budget.
 */
import { expect } from "chai";
import { rollout, type RolloutDeps, type RolloutSettings } from "../../deploy/steps/rollout.js";
import { SsmTransport } from "../../deploy/transports/ssm.js";
import { ReleaseFailedError } from "../../shared/errors.js";
import { fakeClock, offlineSsm } from "../fixtures/aws/clients.js";
import { PARAMS } from "../fixtures/aws/params.js";
import { simulateSsm, type AgentPlan, type AgentRunContext, type SsmSimulatorOptions } from "../fixtures/aws/ssm-simulator.js";

const A = "i-0000000000000000a";
const B = "i-0000000000000000b";
const C = "i-0000000000000000c";
const FLEET = [A, B, C];
/** A canary, then batches of one: [A], [B], [C]. */
const SETTINGS: RolloutSettings = { canary: 1, batch: "1", soakSeconds: 30, maxErrors: 0, commandTimeoutS: 600 };

type Fault = "undeliverable" | "execution-timed-out" | "unhealthy";

/**
 * Instance id → version → the fault a deploy of that version meets there: offline before the
 * command (undeliverable), a run that outlives the execution timeout after switching, or a
 * failed health check the agent rolls back itself.
 */
function agentWith(faults: Record<string, Record<string, Fault>>) {
  return (ctx: AgentRunContext): AgentPlan => {
    const fault = faults[ctx.instanceId]?.[ctx.version];
    if (ctx.instance.version === ctx.version) return { runMs: 1_000, end: "unchanged" };
    if (fault === "execution-timed-out") return { runMs: 10_000_000, switchAtMs: 20_000, end: "deployed" };
    if (fault === "unhealthy") return { runMs: 40_000, end: "rolled_back" };
    return { runMs: 30_000, end: "deployed" };
  };
}

function setup(opts: { faults?: Record<string, Record<string, Fault>>; throttled?: SsmSimulatorOptions["throttle"] } = {}) {
  const clock = fakeClock();
  const client = offlineSsm();
  const offline = Object.entries(opts.faults ?? {}).filter(([, f]) => Object.values(f).includes("undeliverable")).map(([id]) => id);
  const { sim } = simulateSsm(client, {
    now: clock.now,
    instances: Object.fromEntries(FLEET.map((id) => [id, { version: "v1", ...(offline.includes(id) ? { ping: "ConnectionLost" as const } : {}) }])),
    agent: agentWith(opts.faults ?? {}),
    ...(opts.throttled ? { throttle: opts.throttled } : {}),
  });
  const fleet = {
    sim,
    commands: () => sim.sent().map((c) => ({ version: c.version, instanceIds: c.instanceIds })),
    get running() {
      return sim.versions();
    },
    calls: { get SendCommand() { return sim.calls.filter((c) => c.name === "SendCommand").length; }, get ListCommandInvocations() { return sim.calls.filter((c) => c.name === "ListCommandInvocations").length; } },
  };
  const transport = new SsmTransport({
    ssm: client,
    // Mocked clients skip the SDK's retry middleware: the simulator answers both.
    sendCommandClient: client,
    documentName: "zcp-shop-dev-deploy",
    pacing: { sleep: clock.sleep, now: clock.now, random: clock.random, log: clock.log },
  });
  const deps: RolloutDeps = {
    transport,
    paramsFor: async (version) => ({ ...PARAMS, version, artifact: `s3://zcp-artifacts/releases/shop/${version}.tar.gz` }),
    sleep: clock.sleep,
    now: clock.now,
    log: clock.log,
  };
  return { fleet, deps, clock };
}

async function failureOf(work: Promise<unknown>): Promise<ReleaseFailedError> {
  const err = await work.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, "the rollout should fail").to.be.instanceOf(ReleaseFailedError);
  return err as ReleaseFailedError;
}

/** The table row of one instance in a failure message. */
function row(message: string, instanceId: string, status: string): string | undefined {
  return message.split("\n").find((l) => l.includes(instanceId) && l.includes(` ${status} `));
}

describe("faults: SSM Undeliverable and TimedOut through rollout() and the ssm transport", function () {
  it("an offline instance is found before its batch and fails it, named with the reason; nothing is sent to it; the canary goes back to v1", async function () {
    const { fleet, deps } = setup({ faults: { [B]: { v2: "undeliverable" } } });
    const err = await failureOf(rollout(FLEET, "v2", SETTINGS, deps));
    expect(err.message).to.match(/^release v2 failed in batch 2\/3: 1 instance\(s\) unhealthy \(max errors 0\)/);
    expect(row(err.message, B, "undeliverable"), err.message).to.match(/SSM agent is not online \(PingStatus ConnectionLost\)/);
    expect(row(err.message, A, "reverted"), err.message).to.match(/rolled back to v1/);
    // The canary went out, then A back to v1; B was never sent a command, C was never touched.
    expect(fleet.commands()).to.deep.equal([
      { version: "v2", instanceIds: [A] },
      { version: "v1", instanceIds: [A] },
    ]);
    expect(fleet.running).to.deep.equal({ [A]: "v1", [B]: "v1", [C]: "v1" });
  });

  it("an offline canary stops the release before any instance gets a command", async function () {
    const { fleet, deps, clock } = setup({ faults: { [A]: { v2: "undeliverable" } } });
    const err = await failureOf(rollout(FLEET, "v2", SETTINGS, deps));
    expect(err.message).to.match(/^release v2 failed in canary/);
    expect(row(err.message, A, "undeliverable"), err.message).to.not.equal(undefined);
    expect(fleet.commands()).to.deep.equal([]);
    expect(fleet.running).to.deep.equal({ [A]: "v1", [B]: "v1", [C]: "v1" });
    expect(clock.sleeps, "no soak after a failed canary").to.not.include(30_000);
  });

  it("an instance SSM killed at the execution timeout after it switched is rolled back too: no instance is left switched but unverified", async function () {
    const { fleet, deps } = setup({ faults: { [B]: { v2: "execution-timed-out" } } });
    const err = await failureOf(rollout(FLEET, "v2", SETTINGS, deps));
    expect(err.message).to.match(/^release v2 failed in batch 2\/3/);
    expect(row(err.message, B, "timed_out"), err.message).to.match(/timed out while running on the instance \(Execution Timed Out\); its state is unknown/);
    expect(row(err.message, A, "reverted"), err.message).to.match(/rolled back to v1/);
    expect(row(err.message, B, "reverted"), err.message).to.match(/rolled back to v1/);
    expect(fleet.commands().filter((c) => c.version === "v1")).to.deep.equal([{ version: "v1", instanceIds: [A, B] }]);
    expect(fleet.commands().flatMap((c) => c.instanceIds), "the batch after the failure is never sent").to.not.include(C);
    expect(fleet.running).to.deep.equal({ [A]: "v1", [B]: "v1", [C]: "v1" });
  });

  it("an instance whose status could never be read is rolled back too: its agent may have switched it", async function () {
    let sent = (): number => 0;
    // Every status call for the second command (B's batch) is throttled: each poll round has no
    // news, until the wait's deadline cancels the command and reports its state unknown.
    const { fleet, deps, clock } = setup({ throttled: { ListCommandInvocations: () => sent() === 2 } });
    sent = () => fleet.sim.sent().length;
    const err = await failureOf(rollout(FLEET, "v2", SETTINGS, deps));
    expect(err.message).to.match(/^release v2 failed in batch 2\/3/);
    expect(row(err.message, B, "timed_out"), err.message).to.match(/no final status from SSM within \d+s/);
    expect(clock.lines.some((l) => /not read this round \(ThrottlingException\); polling again/.test(l))).to.equal(true);
    expect(row(err.message, B, "reverted"), err.message).to.match(/rolled back to v1/);
    expect(fleet.running).to.deep.equal({ [A]: "v1", [B]: "v1", [C]: "v1" });
  });

  it("an unhealthy instance that rolled itself back is not sent a second rollback; the others are", async function () {
    const { fleet, deps } = setup({ faults: { [C]: { v2: "unhealthy" } } });
    const err = await failureOf(rollout(FLEET, "v2", SETTINGS, deps));
    expect(err.message).to.match(/^release v2 failed in batch 3\/3/);
    expect(row(err.message, C, "rolled_back"), err.message).to.match(/rolled back to v1/);
    expect(fleet.commands().filter((c) => c.version === "v1")).to.deep.equal([{ version: "v1", instanceIds: [A, B] }]);
    expect(fleet.running).to.deep.equal({ [A]: "v1", [B]: "v1", [C]: "v1" });
  });
});

describe("faults: SSM throttling during a rollout", function () {
  it("absorbs bursts of ThrottlingException on SendCommand and ListCommandInvocations; every batch deploys", async function () {
    const { fleet, deps, clock } = setup({
      throttled: {
        // Three refusals before the first send, two before the second.
        SendCommand: (n) => [1, 2, 3, 5, 6].includes(n),
        // Three of every four status calls refused.
        ListCommandInvocations: (n) => n % 4 !== 0,
      },
    });
    const result = await rollout(FLEET, "v2", SETTINGS, deps);
    expect(result.instances.map((i) => [i.instanceId, i.batch, i.status])).to.deep.equal([
      [A, 1, "deployed"],
      [B, 2, "deployed"],
      [C, 3, "deployed"],
    ]);
    expect(fleet.running).to.deep.equal({ [A]: "v2", [B]: "v2", [C]: "v2" });
    // One retry layer each: SendCommand by its token-checked resend, a status call by the next
    // poll round (the SDK's own retries are below the mocked client and not modelled here).
    const resent = clock.lines.filter((l) => /failed \(ThrottlingException\), retrying in \d+ms/.test(l));
    const polledAgain = clock.lines.filter((l) => /not read this round \(ThrottlingException\); polling again/.test(l));
    const throttledSends = [1, 2, 3, 5, 6].length;
    const throttledPolls = fleet.calls.ListCommandInvocations - Math.floor(fleet.calls.ListCommandInvocations / 4);
    expect(resent, "every refused SendCommand was resent, with a progress line").to.have.length(throttledSends);
    expect(polledAgain, "every refused status call was asked again in the next round").to.have.length(throttledPolls);
    expect(clock.sleeps, "the canary soaked before the next batch").to.include(30_000);
  });

  it("a storm longer than the retry budget fails the batch naming the call and the instance; the canary goes back", async function () {
    // The second SendCommand is refused on each of its six attempts.
    const { fleet, deps } = setup({ throttled: { SendCommand: (n) => n >= 2 && n <= 7 } });
    const err = await failureOf(rollout(FLEET, "v2", SETTINGS, deps));
    expect(err.message).to.match(/^release v2 failed in batch 2\/3/);
    expect(row(err.message, B, "error"), err.message).to.match(new RegExp(`SSM deploy to ${B} failed: ThrottlingException: Rate exceeded`));
    expect(row(err.message, A, "reverted"), err.message).to.match(/rolled back to v1/);
    expect(fleet.calls.SendCommand, "6 attempts for B, then one rollback").to.equal(8);
    expect(fleet.running).to.deep.equal({ [A]: "v1", [B]: "v1", [C]: "v1" });
  });
});
