/**
 * The release image bakes from the canary while the remaining batches roll: the real
 * FleetDeployment and BakedImage step code in simulated time, against the EC2 image simulator
 * (tests/fixtures/aws/ec2-image-simulator.ts) and a transport whose agents take 30 s each.
 */
import { expect } from "chai";
import { planImageRetention, type ImageSummary } from "../../deploy/aws/images.js";
import { simInstanceIds, simulateRelease } from "../fixtures/release/sim-release.js";

const MIN = 60_000;

describe("image bake overlapping the rollout (simulated EC2 images)", function () {
  it("with bakeStart soak: sends CreateImage for the canary after its soak and before the next batch, and the release takes about max(rollout, bake)", async function () {
    // 16 instances: canary, then 4 batches of 4; 30 s per batch, 60 s soak; the image takes 10 min.
    const r = await simulateRelease({ instances: 16, overlap: true, bakeStart: "soak", bakeMs: 10 * MIN, agentMs: 30_000, soakSeconds: 60 });
    expect(r.error).to.equal(undefined);
    const canaryInstance = simInstanceIds(16)[0];
    const create = r.sim.calls.find((c) => c.name === "CreateImage");
    expect((create?.input as { InstanceId?: string }).InstanceId).to.equal(canaryInstance);
    // After the canary (30 s) and its soak (60 s), before batch 2 started.
    expect(r.createImageAt).to.equal(90_000);
    expect(r.batchStarts[1]).to.be.at.least(90_000);
    const image = r.sim.image(r.image?.imageId ?? "");
    expect(image?.tags["zcp:image-stage"]).to.equal("released");
    expect(r.fleet?.candidateImageId).to.equal(r.image?.imageId);
    // Rollout 90 s + 4 × 30 s = 210 s; bake 600 s from 90 s: done at 690 s, plus at most one
    // poll interval (30 s) to notice. Sequential would be 210 + 600 = 810 s at least.
    expect(r.fleetMs).to.equal(210_000);
    expect(r.totalMs).to.be.at.most(90_000 + 10 * MIN + 30_000);
    expect(r.totalMs).to.be.below(210_000 + 10 * MIN);
  });

  it("keeps the candidate a candidate while batches roll: its stage is only `released` after BakedImage", async function () {
    const r = await simulateRelease({ instances: 8, overlap: true, bakeMs: 5 * MIN, agentMs: 30_000, soakSeconds: 0 });
    expect(r.error).to.equal(undefined);
    const tagged = r.sim.calls.filter((c) => c.name === "CreateImage").map((c) => (c.input as { TagSpecifications?: { Tags?: { Key?: string; Value?: string }[] }[] }).TagSpecifications?.[0]?.Tags ?? []);
    expect(tagged[0]).to.deep.include({ Key: "zcp:image-stage", Value: "candidate" });
    const promote = r.sim.calls.find((c) => c.name === "CreateTags" && JSON.stringify(c.input).includes('"released"'));
    expect(promote, "the candidate is promoted once every batch is healthy").to.not.equal(undefined);
    const start = r.clock.now() - r.totalMs;
    expect((promote?.at ?? 0) - start).to.be.at.least(r.fleetMs);
  });

  it("retires the candidate when a later batch fails, and never promotes it", async function () {
    const ids = simInstanceIds(8);
    const r = await simulateRelease({ instances: 8, overlap: true, bakeMs: 10 * MIN, agentMs: 30_000, soakSeconds: 0, failing: [ids[5] ?? ""] });
    expect(String(r.error)).to.match(/failed in batch/);
    expect(r.image).to.equal(undefined);
    const [only] = r.sim.images();
    expect(r.sim.images()).to.have.length(1);
    expect(only?.tags["zcp:image-stage"]).to.equal("retired");
    // Pending when retired: it is left for a later release's retention, never deregistered mid-bake.
    expect(only?.deregisteredWhileState).to.equal(undefined);
  });

  it("without the overlap the image waits for the whole rollout (rollout + bake)", async function () {
    const r = await simulateRelease({ instances: 16, overlap: false, bakeMs: 10 * MIN, agentMs: 30_000, soakSeconds: 60 });
    expect(r.error).to.equal(undefined);
    expect(r.createImageAt).to.equal(r.fleetMs);
    expect(r.totalMs).to.be.at.least(r.fleetMs + 10 * MIN);
  });

  it("retention removes finished candidates and retired images and never counts them as release images", function () {
    const img = (id: string, created: string, stage: string | undefined, state = "available"): ImageSummary => ({
      imageId: id,
      name: id,
      state,
      creationDate: created,
      tags: { "zcp:version": id, ...(stage ? { "zcp:image-stage": stage } : {}) },
      snapshotIds: [],
    });
    const plan = planImageRetention(
      [
        img("ami-retired", "2026-01-05T00:00:00.000Z", "retired"),
        img("ami-stale-candidate", "2026-01-04T00:00:00.000Z", "candidate"),
        img("ami-baking-candidate", "2026-01-06T00:00:00.000Z", "candidate", "pending"),
        img("ami-v3", "2026-01-03T00:00:00.000Z", "released"),
        img("ami-v2", "2026-01-02T00:00:00.000Z", undefined),
        img("ami-v1", "2026-01-01T00:00:00.000Z", "released"),
      ],
      2,
      { byLaunchTemplate: new Map(), byInstances: new Map(), protect: new Set() },
    );
    expect(plan.removed.map((r) => r.imageId).sort()).to.deep.equal(["ami-retired", "ami-stale-candidate", "ami-v1"]);
    expect(plan.kept.map((k) => k.imageId).sort()).to.deep.equal(["ami-baking-candidate", "ami-v2", "ami-v3"]);
  });
});
