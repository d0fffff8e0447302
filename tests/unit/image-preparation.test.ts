/**
 * No image is taken from an instance before its agent has checked the release against the
 * manifest recorded at deploy time and cleared the instance's identity (prepare-image). A
 * refusal means an app user changed the release: the release fails (rolling the canary back
 * when the rollout is still under way) and CreateImage is never sent.
 *
 * The real FleetDeployment and BakedImage step code in simulated time against the EC2 image
 * simulator, with the ssm transport over the SSM simulator (tests/fixtures/aws/) or a timed
 * fake transport; CandidateImage alone against aws-sdk-client-mock.
 */
import { CreateImageCommand, DescribeImagesCommand, EC2Client } from "@aws-sdk/client-ec2";
import { expect } from "chai";
import { mockClient } from "aws-sdk-client-mock";
import { SsmTransport } from "../../deploy/transports/ssm.js";
import { CandidateImage } from "../../deploy/steps/candidate-image.js";
import { ReleaseFailedError } from "../../shared/errors.js";
import { SsmSimulator } from "../fixtures/aws/ssm-simulator.js";
import { prepareInstanceForImage } from "../../deploy/steps/image-preparation.js";
import { offlineSsm } from "../fixtures/aws/clients.js";
import { SimClock } from "../fixtures/aws/sim-clock.js";
import { fleetInputs, simInstanceIds, simulateRelease, type SimReleaseResult } from "../fixtures/release/sim-release.js";

const MIN = 60_000;

/** A release over the ssm transport and the SSM simulator, whose agent refuses prepare-image on `tampered`. */
async function releaseOverSsm(opts: { instances: number; overlap: boolean; tampered: readonly string[] }): Promise<SimReleaseResult & { ssm: SsmSimulator }> {
  let ssm: SsmSimulator | undefined;
  let restore: (() => void) | undefined;
  try {
    const r = await simulateRelease({
      instances: opts.instances,
      overlap: opts.overlap,
      bakeMs: 5 * MIN,
      soakSeconds: 60,
      transport: (clock, clients, instanceIds) => {
        ssm = new SsmSimulator({
          now: clock.now,
          instances: Object.fromEntries(instanceIds.map((id) => [id, { version: "v1" }])),
          agent: (ctx) => (ctx.instance.version === ctx.version ? { runMs: 1_000, end: "unchanged" } : { runMs: 20_000, end: "deployed" }),
          tampered: opts.tampered,
        });
        const mock = ssm.attach(clients.ssm);
        restore = () => mock.restore();
        return new SsmTransport({ ssm: clients.ssm, sendCommandClient: clients.ssm, documentName: "zcp-shop-prod-deploy", pacing: { now: clock.now, sleep: clock.sleep } });
      },
    });
    return { ...r, ssm: ssm as SsmSimulator };
  } finally {
    restore?.();
  }
}

function prepareCommands(ssm: SsmSimulator) {
  return ssm.sent().filter((c) => c.input.Parameters?.action?.[0] === "prepare-image");
}

describe("prepare-image before every image (simulated SSM and EC2)", function () {
  it("prepares the canary over SSM before CreateImage is sent from it", async () => {
    const ids = simInstanceIds(4);
    const r = await releaseOverSsm({ instances: 4, overlap: true, tampered: [] });

    expect(r.error).to.equal(undefined);
    const prepares = prepareCommands(r.ssm);
    expect(prepares.map((c) => c.instanceIds)).to.deep.equal([[ids[0]]]);
    expect(prepares[0]?.input.DocumentName).to.equal("zcp-shop-prod-deploy");
    expect(prepares[0]?.input.Parameters?.version).to.deep.equal(["v2"]);
    const prepared = r.ssm.instance(ids[0] ?? "")?.runs.find((run) => run.end === "prepared");
    expect(prepared, "the canary's agent prepared it").to.not.equal(undefined);
    const create = r.sim.calls.find((c) => c.name === "CreateImage");
    expect((create?.input as { InstanceId?: string }).InstanceId).to.equal(ids[0]);
    // Deploys never carry the parameter: a document that predates it still deploys.
    const deploys = r.ssm.sent().filter((c) => !c.input.Parameters?.action);
    expect(deploys.length).to.be.greaterThan(0);
  });

  it("a canary whose release was changed fails the release, rolls it back and is never imaged", async () => {
    const ids = simInstanceIds(4);
    const canary = ids[0] ?? "";
    const r = await simulateRelease({ instances: 4, overlap: true, bakeMs: 5 * MIN, agentMs: 30_000, soakSeconds: 60, tampered: [canary] });

    expect(r.error).to.be.instanceOf(ReleaseFailedError);
    const message = (r.error as Error).message;
    expect(message).to.include(`release v2 failed in canary: no image was baked from ${canary}: refused to prepare an image`);
    expect(message).to.include("app.py: content changed");
    expect(message).to.include("treat the instance as compromised");
    expect(message).to.match(new RegExp(`${canary} +batch 1 +deployed`));
    expect(message).to.match(new RegExp(`${canary} +batch 0 +reverted +prev v2 .*rolled back to v1`));
    expect(r.sim.calls.filter((c) => c.name === "CreateImage"), "CreateImage").to.deep.equal([]);
    expect(r.batchStarts, "no batch after the canary").to.have.length(1);
  });

  it("over SSM, a refusal names the instance and what differs, and the command asked for prepare-image only", async () => {
    const clock = new SimClock();
    const ssmClient = offlineSsm();
    const ids = simInstanceIds(2);
    const ssm = new SsmSimulator({ now: clock.now, instances: { [ids[0] ?? ""]: { version: "v2" }, [ids[1] ?? ""]: { version: "v2" } }, tampered: [ids[0] ?? ""] });
    const mock = ssm.attach(ssmClient);
    const transport = new SsmTransport({ ssm: ssmClient, sendCommandClient: ssmClient, documentName: "zcp-shop-prod-deploy", pacing: { now: clock.now, sleep: clock.sleep } });
    const params = { ...fleetInputs({ instances: 2, overlap: true, bakeMs: 0 }).runtime, app: "shop", version: "v2", artifact: "s3://zcp-sim-artifacts/releases/shop/v2.tar.gz", sha256: "5".repeat(64) };
    const logged: string[] = [];
    let refused: unknown;
    try {
      await clock.run(async () => {
        await prepareInstanceForImage(transport, ids[1] ?? "", { params, timeoutS: 600 }, (m) => logged.push(m));
        await prepareInstanceForImage(transport, ids[0] ?? "", { params, timeoutS: 600 }, (m) => logged.push(m)).catch((err: unknown) => {
          refused = err;
        });
      });
    } finally {
      mock.restore();
    }

    expect(logged.join("\n")).to.include(`${ids[1]} may be imaged: prepared for an image: release v2 matches its manifest`);
    expect(refused).to.be.instanceOf(ReleaseFailedError);
    expect((refused as Error).message).to.match(new RegExp(`^no image was baked from ${ids[0]}: refused to prepare an image: release v2 differs .*app\\.py: content changed`));
    expect(ssm.sent().map((c) => [c.instanceIds, c.input.Parameters?.action])).to.deep.equal([
      [[ids[1]], ["prepare-image"]],
      [[ids[0]], ["prepare-image"]],
    ]);
    expect(ssm.versions(), "nothing switched").to.deep.equal({ [ids[0] ?? ""]: "v2", [ids[1] ?? ""]: "v2" });
  });

  it("without the overlap, BakedImage prepares the source instance and bakes nothing when it is refused", async () => {
    const ids = simInstanceIds(4);
    const r = await simulateRelease({ instances: 4, overlap: false, bakeMs: 5 * MIN, agentMs: 30_000, soakSeconds: 0, tampered: [ids[0] ?? ""] });

    expect(r.fleet, "the rollout itself succeeded").to.not.equal(undefined);
    expect(r.error).to.be.instanceOf(ReleaseFailedError);
    expect((r.error as Error).message).to.match(new RegExp(`^no image was baked from ${ids[0]}: refused to prepare an image: .*app\\.py: content changed`));
    expect(r.sim.calls.filter((c) => c.name === "CreateImage"), "CreateImage").to.deep.equal([]);
  });

  it("without the overlap, an untouched source instance is imaged", async () => {
    const r = await simulateRelease({ instances: 4, overlap: false, bakeMs: 5 * MIN, agentMs: 30_000, soakSeconds: 0 });

    expect(r.error).to.equal(undefined);
    expect(r.sim.calls.filter((c) => c.name === "CreateImage")).to.have.length(1);
  });
});

describe("CandidateImage and prepare-image (aws-sdk-client-mock)", () => {
  const req = { app: "shop", env: "prod", version: "v2", sha256: "5".repeat(64), noReboot: true, tagSnapshotsOnCreate: true };

  it("sends no CreateImage when the instance may not be imaged, and rejects with the refusal", async () => {
    const ec2 = new EC2Client({ region: "us-east-1" });
    const mock = mockClient(ec2);
    mock.on(DescribeImagesCommand).resolves({ Images: [] });
    mock.on(CreateImageCommand).resolves({ ImageId: "ami-0new" });
    const refusal = new ReleaseFailedError("no image was baked from i-0abc: refused to prepare an image");
    const prepared: string[] = [];
    const candidate = new CandidateImage(ec2, req, () => undefined, {}, async (id) => {
      prepared.push(id);
      throw refusal;
    });

    let thrown: unknown;
    await candidate.start("i-0abc").catch((err: unknown) => (thrown = err));

    expect(thrown).to.equal(refusal);
    expect(prepared).to.deep.equal(["i-0abc"]);
    expect(mock.commandCalls(CreateImageCommand)).to.have.length(0);
    expect(await candidate.imageId()).to.equal("");
    mock.restore();
  });

  it("prepares the instance, then sends CreateImage for it", async () => {
    const ec2 = new EC2Client({ region: "us-east-1" });
    const mock = mockClient(ec2);
    const order: string[] = [];
    mock.on(DescribeImagesCommand).resolves({ Images: [] });
    mock.on(CreateImageCommand).callsFake(() => {
      order.push("CreateImage");
      return { ImageId: "ami-0new" };
    });
    const candidate = new CandidateImage(ec2, req, () => undefined, {}, async (id) => {
      order.push(`prepare ${id}`);
    });

    await candidate.start("i-0abc");

    expect(order).to.deep.equal(["prepare i-0abc", "CreateImage"]);
    expect(mock.commandCalls(CreateImageCommand)[0]?.args[0].input.InstanceId).to.equal("i-0abc");
    expect(await candidate.imageId()).to.equal("ami-0new");
    mock.restore();
  });

  it("adopts an image this version already has without preparing anything", async () => {
    const ec2 = new EC2Client({ region: "us-east-1" });
    const mock = mockClient(ec2);
    mock.on(DescribeImagesCommand).resolves({
      Images: [{ ImageId: "ami-0old", Name: "shop-prod-v2", State: "available", CreationDate: "2026-01-01T00:00:00.000Z", Tags: [{ Key: "zcp:version", Value: "v2" }] }],
    });
    const prepared: string[] = [];
    const candidate = new CandidateImage(ec2, req, () => undefined, {}, async (id) => {
      prepared.push(id);
    });

    await candidate.start("i-0abc");

    expect(prepared).to.deep.equal([]);
    expect(mock.commandCalls(CreateImageCommand)).to.have.length(0);
    expect(await candidate.imageId()).to.equal("ami-0old");
    mock.restore();
  });
});
