/**
 * One retry layer per request. The SSM simulator is served on 127.0.0.1 and the runner's real
 * SDK clients (deploy/aws/clients.ts, adaptive retry) talk to it, so the SDK's retry middleware
 * really runs: a mocked client would skip it and hide a second layer stacked on top.
 *
 *  - an ordinary call is retried by the SDK only: a request refused every time reaches SSM
 *    `maxAttempts` (5) times, not 6 × 5 = 30 as with zcp's old loop around each call;
 *  - SendCommand is retried by zcp's token-checked resend only: its client has the SDK's
 *    retries off, so a refused SendCommand reaches SSM once per resend (6), never 6 × 5.
 *
 * The SDK sleeps for real between its attempts (its backoff, a few seconds in all); zcp's own
 * waits run on the fake clock. Nothing here is timed.
 */
import { expect } from "chai";
import { DescribeImagesCommand } from "@aws-sdk/client-ec2";
import { mockClient } from "aws-sdk-client-mock";
import { waitForImageAvailable } from "../../deploy/aws/images.js";
import { createSendCommandClient, createSsmClient } from "../../deploy/aws/clients.js";
import { SsmTransport } from "../../deploy/transports/ssm.js";
import { SsmSimulator, type SsmApi, type SsmSimulatorOptions } from "../fixtures/aws/ssm-simulator.js";
import { awsError, fakeClock, offlineEc2 } from "../fixtures/aws/clients.js";
import { PARAMS } from "../fixtures/aws/params.js";

const ID = "i-0000000000000000a";
/** Only ever accepted by the simulator on loopback. */
const CREDENTIALS = { accessKeyId: "testing", secretAccessKey: "testing" };
/** The SDK's attempts per request, as deploy/aws/clients.ts sets them. */
const SDK_ATTEMPTS = 5;
/** zcp's resends of one SendCommand (deploy/transports/ssm.ts, SEND_COMMAND_RETRY). */
const SEND_COMMAND_ATTEMPTS = 6;

async function servedSsm(throttle: NonNullable<SsmSimulatorOptions["throttle"]>) {
  const clock = fakeClock();
  const sim = new SsmSimulator({
    now: clock.now,
    instances: { [ID]: { version: "v1" } },
    agent: () => ({ runMs: 3_000, end: "deployed" }),
    throttle,
  });
  const served = await sim.serve();
  const cfg = { region: "us-east-1", endpoint: served.endpoint, credentials: CREDENTIALS };
  const ssm = createSsmClient(cfg, {});
  const sendCommandClient = createSendCommandClient(cfg, {});
  const transport = new SsmTransport({
    ssm,
    sendCommandClient,
    documentName: "zcp-shop-dev-deploy",
    pacing: { sleep: clock.sleep, now: clock.now, random: clock.random, log: clock.log },
  });
  const sends = (name: SsmApi) => sim.calls.filter((c) => c.name === name).length;
  const close = async () => {
    ssm.destroy();
    sendCommandClient.destroy();
    await served.close();
  };
  return { sim, transport, clock, sends, close };
}

describe("one retry layer per request (real SDK clients against the SSM simulator on 127.0.0.1)", function () {
  this.timeout(180_000);

  it("an ordinary call throttled every time reaches SSM 5 times (the SDK's attempts), not 6 × 5", async function () {
    const s = await servedSsm({ DescribeInstanceInformation: () => true });
    try {
      const [outcome] = await s.transport.runAgent([ID], PARAMS, { timeoutS: 600 });
      // The managed-node check is advisory: refused for good, the command goes to every id.
      expect(outcome).to.include({ ok: true, status: "deployed" });
      expect(s.clock.lines.some((l) => /could not check which instances SSM manages \(.*ThrottlingException/.test(l))).to.equal(true);
      expect(s.sends("DescribeInstanceInformation"), "sends of the one throttled request").to.equal(SDK_ATTEMPTS);
    } finally {
      await s.close();
    }
  });

  it("a SendCommand throttled every time is sent once per zcp resend (6), never multiplied by SDK retries", async function () {
    const s = await servedSsm({ SendCommand: () => true });
    try {
      const [outcome] = await s.transport.runAgent([ID], PARAMS, { timeoutS: 600 });
      expect(outcome).to.include({ ok: false, status: "error" });
      expect(outcome?.message).to.match(new RegExp(`SSM deploy to ${ID} failed: ThrottlingException: Rate exceeded`));
      expect(s.sends("SendCommand"), "sends of the one throttled SendCommand").to.equal(SEND_COMMAND_ATTEMPTS);
      expect(s.sim.sent(), "no command was started").to.have.length(0);
    } finally {
      await s.close();
    }
  });

  it("a burst the SDK absorbs costs no zcp retry: two refusals, three sends, one command", async function () {
    const s = await servedSsm({ DescribeInstanceInformation: (n) => n <= 2 });
    try {
      const [outcome] = await s.transport.runAgent([ID], PARAMS, { timeoutS: 600 });
      expect(outcome).to.include({ ok: true, status: "deployed" });
      expect(s.sends("DescribeInstanceInformation")).to.equal(3);
      expect(s.clock.lines.filter((l) => /retrying in \d+ms/.test(l)), "zcp itself retried nothing").to.deep.equal([]);
    } finally {
      await s.close();
    }
  });
});

describe("one retry layer: a polling loop waits through throttling (mocked EC2: the SDK's own retries are below the mock)", function () {
  it("a DescribeImages call still throttled after the SDK's retries is no news: the image waiter polls again, and nothing else retries it", async function () {
    const clock = fakeClock();
    const ec2 = offlineEc2();
    const mock = mockClient(ec2);
    const available = { ImageId: "ami-0fresh", Name: "x", State: "available" as const, CreationDate: "2026-12-07T00:00:00.000Z" };
    mock
      .on(DescribeImagesCommand)
      .rejectsOnce(awsError("RequestLimitExceeded", 503, "Request limit exceeded."))
      .rejectsOnce(awsError("RequestLimitExceeded", 503, "Request limit exceeded."))
      .resolves({ Images: [available] });
    const img = await waitForImageAvailable(ec2, "ami-0fresh", {
      timeoutMinutes: 30,
      pacing: { sleep: clock.sleep, now: clock.now, random: clock.random, log: clock.log },
    });
    expect(img.state).to.equal("available");
    // One DescribeImages per poll round: the two refused rounds, then the answer.
    expect(mock.commandCalls(DescribeImagesCommand)).to.have.length(3);
    expect(clock.lines.filter((l) => /^AmiAvailable: attempt \d+\/\d+/.test(l))).to.have.length(2);
    expect(clock.lines.filter((l) => /retrying in \d+ms/.test(l)), "no retry loop around the call").to.deep.equal([]);
  });
});
