/**
 * When the release image starts baking (zcp:image.bakeStart): by default as soon as the canary
 * is healthy, alongside its soak, so a release takes about canary + bake rather than canary +
 * soak + bake when the bake is the longer part. The real FleetDeployment and BakedImage step
 * code in simulated time, against the EC2 image simulator (tests/fixtures/aws/ec2-image-simulator.ts),
 * a transport whose agents take 30 s each, and a mocked CloudWatch alarm gating the soak.
 */
import { expect } from "chai";
import { parseConfig } from "../../shared/config.js";
import { ConfigError } from "../../shared/errors.js";
import { simInstanceIds, simulateRelease } from "../fixtures/release/sim-release.js";

const MIN = 60_000;

/** The smallest valid stack config, with `image` as given. */
function configWith(image: Record<string, unknown> | undefined) {
  return {
    app: "shop",
    environment: "dev",
    github: { owner: "example-org", repo: "shop" },
    aws: { accountId: "111111111111", region: "eu-west-1" },
    fleet: { subnetIds: ["subnet-0123456789abcdef0"] },
    baseAmiId: "ami-0123456789abcdef0",
    runtime: { healthUrl: "http://127.0.0.1:8080/health" },
    ...(image ? { image } : {}),
  };
}

describe("image bake start (zcp:image.bakeStart; simulated EC2 images)", function () {
  it("by default sends CreateImage for the canary once it is healthy, before its soak, and the release takes about canary + bake", async function () {
    // 16 instances: canary, then 4 batches of 4; 30 s per batch, 60 s soak; the image takes 10 min.
    const r = await simulateRelease({ instances: 16, overlap: true, bakeMs: 10 * MIN, agentMs: 30_000, soakSeconds: 60 });
    expect(r.error).to.equal(undefined);
    const create = r.sim.calls.find((c) => c.name === "CreateImage");
    expect((create?.input as { InstanceId?: string }).InstanceId).to.equal(simInstanceIds(16)[0]);
    // The canary is healthy at 30 s; its soak runs 30..90 s; batch 2 starts at 90 s.
    expect(r.createImageAt).to.equal(30_000);
    expect(r.batchStarts[1]).to.equal(90_000);
    expect(r.sim.image(r.image?.imageId ?? "")?.tags["zcp:image-stage"]).to.equal("released");
    // Bake done at 30 s + 600 s, plus at most one poll interval (30 s) to notice; starting after
    // the soak could not finish before 90 s + 600 s.
    expect(r.fleetMs).to.equal(210_000);
    expect(r.totalMs).to.be.at.most(30_000 + 10 * MIN + 30_000);
    expect(r.totalMs).to.be.below(90_000 + 10 * MIN);
  });

  it("prepares the canary for its image alongside its soak; the next batch waits for whichever ends last", async function () {
    // prepare-image takes 20 s on the canary (an SSM round trip and one release tree hashed).
    const soaked = await simulateRelease({ instances: 8, overlap: true, bakeMs: 5 * MIN, agentMs: 30_000, soakSeconds: 60, prepareMs: 20_000 });
    expect(soaked.error).to.equal(undefined);
    // Canary healthy at 30 s; the preparation (30..50 s) runs inside the soak (30..90 s), and
    // CreateImage follows it at once. One after the other, batch 2 would start at 110 s.
    expect(soaked.createImageAt).to.equal(50_000);
    expect(soaked.batchStarts[1]).to.equal(90_000);
    // Without a soak the next batch still waits for the preparation: a refusal must stop it.
    const unsoaked = await simulateRelease({ instances: 8, overlap: true, bakeMs: 5 * MIN, agentMs: 30_000, soakSeconds: 0, prepareMs: 20_000 });
    expect(unsoaked.error).to.equal(undefined);
    expect(unsoaked.batchStarts[1]).to.equal(50_000);
  });

  it("a refused preparation that ends after the soak still stops the release before the next batch", async function () {
    const ids = simInstanceIds(8);
    const r = await simulateRelease({ instances: 8, overlap: true, bakeMs: 5 * MIN, agentMs: 30_000, soakSeconds: 10, prepareMs: 20_000, tampered: [ids[0] ?? ""] });
    expect(String(r.error)).to.match(/failed in canary: .*differs from the manifest/);
    expect(r.batchStarts, "no batch after the canary").to.have.length(1);
    expect(r.sim.calls.filter((c) => c.name === "CreateImage")).to.deep.equal([]);
  });

  it("an alarm during the soak rolls the canary back only once its preparation has answered", async function () {
    // Canary healthy at 30 s; its preparation runs 30..50 s; the alarm is seen at the soak's
    // 10 s check (40 s). The rollback must not act on the canary while the agent prepares it.
    const r = await simulateRelease({ instances: 8, overlap: true, bakeMs: 5 * MIN, agentMs: 30_000, soakSeconds: 60, prepareMs: 20_000, alarmAfterMs: 35_000 });
    expect(String(r.error)).to.match(/failed in canary: alarm shop-prod-5xx is in ALARM/);
    expect(r.batchStarts, "no batch after the canary").to.have.length(1);
    expect(r.rollbackStarts).to.have.length.greaterThan(0);
    expect(r.rollbackStarts[0]).to.be.at.least(50_000);
  });

  it("retires the candidate started at the canary when an alarm fails the soak; nothing is promoted", async function () {
    const r = await simulateRelease({ instances: 8, overlap: true, bakeMs: 10 * MIN, agentMs: 30_000, soakSeconds: 60, alarmAfterMs: 50_000 });
    expect(String(r.error)).to.match(/failed in canary: alarm shop-prod-5xx is in ALARM/);
    expect(r.createImageAt).to.equal(30_000);
    expect(r.batchStarts, "no batch after the canary").to.have.length(1);
    expect(r.image).to.equal(undefined);
    const images = r.sim.images();
    expect(images).to.have.length(1);
    expect(images[0]?.tags["zcp:image-stage"]).to.equal("retired");
    expect(r.sim.calls.some((c) => c.name === "CreateTags" && JSON.stringify(c.input).includes('"released"'))).to.equal(false);
  });

  it("with bakeStart soak, a soak that fails costs no image at all", async function () {
    const r = await simulateRelease({ instances: 8, overlap: true, bakeStart: "soak", bakeMs: 10 * MIN, agentMs: 30_000, soakSeconds: 60, alarmAfterMs: 50_000 });
    expect(String(r.error)).to.match(/failed in canary/);
    expect(r.sim.calls.filter((c) => c.name === "CreateImage")).to.deep.equal([]);
  });

  it("starts at the first healthy batch when there is no canary, before the next batch", async function () {
    const r = await simulateRelease({ instances: 8, overlap: true, canary: 0, bakeMs: 5 * MIN, agentMs: 30_000, soakSeconds: 60 });
    expect(r.error).to.equal(undefined);
    expect(r.createImageAt).to.equal(30_000);
    expect(r.batchStarts[1]).to.equal(30_000);
  });

  it("config: defaults to canary, accepts soak, and refuses anything else naming the field", function () {
    expect(parseConfig(configWith(undefined)).image.bakeStart).to.equal("canary");
    expect(parseConfig(configWith({ bakeStart: "soak" })).image.bakeStart).to.equal("soak");
    let err: unknown;
    try {
      parseConfig(configWith({ bakeStart: "batch" }));
    } catch (e) {
      err = e;
    }
    expect(err).to.be.instanceOf(ConfigError);
    expect((err as ConfigError).message).to.equal('zcp:image.bakeStart: must be "canary" or "soak", got "batch"');
  });
});
