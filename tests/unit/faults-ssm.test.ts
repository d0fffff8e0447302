/**
 * SSM faults through the whole rollout: `rollout()` driving the real ssm transport against a
 * mocked SSM that remembers what each instance runs. An instance SSM cannot reach or that
 * times out fails the release with its name and reason, every instance the release switched
 * goes back, and throttled status calls are absorbed by polling again.
 */
import { expect } from "chai";
import { rollout, type RolloutDeps, type RolloutSettings } from "../../deploy/steps/rollout.js";
import { SsmTransport } from "../../deploy/transports/ssm.js";
import { ReleaseFailedError } from "../../shared/errors.js";
import { fakeClock, offlineSsm } from "../fixtures/aws/clients.js";
import { PARAMS } from "../fixtures/aws/fake-ssm.js";
import { simulatedSsmFleet, type SimulatedFleetOptions } from "../fixtures/faults/ssm-fleet.js";

const A = "i-0000000000000000a";
const B = "i-0000000000000000b";
const C = "i-0000000000000000c";
const FLEET = [A, B, C];
/** A canary, then batches of one: [A], [B], [C]. */
const SETTINGS: RolloutSettings = { canary: 1, batch: "1", soakSeconds: 30, maxErrors: 0, commandTimeoutS: 600 };

function setup(opts: Omit<SimulatedFleetOptions, "running"> = {}) {
  const clock = fakeClock();
  const client = offlineSsm();
  const fleet = simulatedSsmFleet(client, { running: { [A]: "v1", [B]: "v1", [C]: "v1" }, ...opts });
  const transport = new SsmTransport({
    ssm: client,
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
  it("an instance SSM cannot deliver to fails its batch, named with the reason; the canary it followed goes back to v1", async function () {
    const { fleet, deps } = setup({ faults: { [B]: { v2: "undeliverable" } } });
    const err = await failureOf(rollout(FLEET, "v2", SETTINGS, deps));
    expect(err.message).to.match(/^release v2 failed in batch 2\/3: 1 instance\(s\) unhealthy \(max errors 0\)/);
    expect(row(err.message, B, "undeliverable"), err.message).to.match(/SSM could not deliver the command \(Undeliverable\)/);
    expect(row(err.message, A, "reverted"), err.message).to.match(/rolled back to v1/);
    // The canary went out, then B, then A back to v1; C was never touched.
    expect(fleet.commands()).to.deep.equal([
      { version: "v2", instanceIds: [A] },
      { version: "v2", instanceIds: [B] },
      { version: "v1", instanceIds: [A] },
    ]);
    expect(fleet.running).to.deep.equal({ [A]: "v1", [B]: "v1", [C]: "v1" });
  });

  it("an undeliverable canary stops the release before any other instance gets a command", async function () {
    const { fleet, deps, clock } = setup({ faults: { [A]: { v2: "undeliverable" } } });
    const err = await failureOf(rollout(FLEET, "v2", SETTINGS, deps));
    expect(err.message).to.match(/^release v2 failed in canary/);
    expect(row(err.message, A, "undeliverable"), err.message).to.not.equal(undefined);
    expect(fleet.commands()).to.deep.equal([{ version: "v2", instanceIds: [A] }]);
    expect(fleet.running).to.deep.equal({ [A]: "v1", [B]: "v1", [C]: "v1" });
    expect(clock.sleeps, "no soak after a failed canary").to.not.include(30_000);
  });

  it("an instance whose command timed out fails its batch as timed_out, state unknown; the instances the release switched go back", async function () {
    const { fleet, deps } = setup({ faults: { [B]: { v2: "execution-timed-out" } } });
    const err = await failureOf(rollout(FLEET, "v2", SETTINGS, deps));
    expect(err.message).to.match(/^release v2 failed in batch 2\/3/);
    expect(row(err.message, B, "timed_out"), err.message).to.match(/timed out while running on the instance \(ExecutionTimedOut\); its state is unknown/);
    expect(row(err.message, A, "reverted"), err.message).to.match(/rolled back to v1/);
    const rollbacks = fleet.commands().filter((c) => c.version === "v1");
    expect(rollbacks.flatMap((c) => c.instanceIds)).to.include(A);
    expect(fleet.commands().flatMap((c) => c.instanceIds), "the batch after the failure is never sent").to.not.include(C);
    expect(fleet.running[A]).to.equal("v1");
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
  it("absorbs bursts of throttled ListCommandInvocations by polling again; every batch deploys (mocked SSM)", async function () {
    const { fleet, deps, clock } = setup({
      // Three of every four status calls refused (what reaches zcp after the SDK's own retries).
      throttled: { ListCommandInvocations: (n) => n % 4 !== 0 },
    });
    const result = await rollout(FLEET, "v2", SETTINGS, deps);
    expect(result.instances.map((i) => [i.instanceId, i.batch, i.status])).to.deep.equal([
      [A, 1, "deployed"],
      [B, 2, "deployed"],
      [C, 3, "deployed"],
    ]);
    expect(fleet.running).to.deep.equal({ [A]: "v2", [B]: "v2", [C]: "v2" });
    expect(fleet.calls.SendCommand, "one send per batch, none repeated").to.equal(3);
    const rounds = clock.lines.filter((l) => l.startsWith("SsmDeploy: attempt"));
    expect(rounds.length, "refused status calls cost polling rounds").to.be.at.least(fleet.calls.ListCommandInvocations - Math.floor(fleet.calls.ListCommandInvocations / 4));
    expect(clock.sleeps, "the canary soaked before the next batch").to.include(30_000);
  });

  it("a SendCommand throttled past the SDK's retries fails the batch naming the call and the instance; the canary goes back (mocked SSM)", async function () {
    // The second SendCommand is refused: zcp sends it once (the SDK's attempts are beneath the mock).
    const { fleet, deps } = setup({ throttled: { SendCommand: (n) => n === 2 } });
    const err = await failureOf(rollout(FLEET, "v2", SETTINGS, deps));
    expect(err.message).to.match(/^release v2 failed in batch 2\/3/);
    expect(row(err.message, B, "error"), err.message).to.match(new RegExp(`SSM deploy to ${B} failed: ThrottlingException: Rate exceeded`));
    expect(row(err.message, A, "reverted"), err.message).to.match(/rolled back to v1/);
    expect(fleet.calls.SendCommand, "A, one send for B, then one rollback for A").to.equal(3);
    expect(fleet.running).to.deep.equal({ [A]: "v1", [B]: "v1", [C]: "v1" });
  });
});
