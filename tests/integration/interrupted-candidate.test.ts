/**
 * A release interrupted after its candidate image was created, and the release after it, as
 * docs/operations.md's interrupted-release table says: the runner is killed (with its engine)
 * right after FleetDeployment sent CreateImage for the canary, while the remaining batches
 * roll. The next release of the same version adopts that candidate (no second image) and
 * promotes it; a release of another version bakes its own and its retention removes the one
 * left behind. Real engine, emulator, supervisord and agent, on the local environment.
 */
import { expect } from "chai";
import { DescribeImagesCommand, EC2Client } from "@aws-sdk/client-ec2";
import { ZcpHarness, collect, type ZcpRun } from "../helpers/zcp.js";
import { killRunner, ProgressWatcher, waitRunnerGone, wholeReleases } from "../helpers/faults.js";
import type { ProgressRecord } from "../../deploy/progress.js";

interface ImageRow {
  imageId: string;
  state: string;
  version: string;
  stage: string;
}

const CANDIDATE_LOG = /baking candidate image (ami-[0-9a-f]+) from /;

describe("a release after one interrupted with a candidate image (real engine, emulator, supervisord, agent)", function () {
  const zcp = new ZcpHarness(3);
  after(async () => zcp.teardown());

  /** The app's images in the emulator, with their version and stage tags. */
  async function images(): Promise<ImageRow[]> {
    const ec2 = new EC2Client({ region: "us-east-1", endpoint: zcp.endpoint(), credentials: { accessKeyId: "testing", secretAccessKey: "testing" } });
    try {
      const out = await ec2.send(new DescribeImagesCommand({ Owners: ["self"] }));
      return (out.Images ?? [])
        .map((i) => {
          const tags = Object.fromEntries((i.Tags ?? []).map((t) => [t.Key ?? "", t.Value ?? ""]));
          return { imageId: i.ImageId ?? "", state: i.State ?? "", version: tags["zcp:version"] ?? "", stage: tags["zcp:image-stage"] ?? "" };
        })
        .filter((i) => i.version !== "");
    } finally {
      ec2.destroy();
    }
  }

  /** Starts a release and kills its runner the moment its candidate image exists; returns the image id. */
  async function interruptAfterCandidate(version: string): Promise<{ candidate: string; run: ZcpRun }> {
    const watch = new ProgressWatcher(zcp);
    const child = zcp.spawn(["release", "--env", "local", "--version", version]);
    const done = collect(child);
    let candidate = "";
    const isCandidate = (r: ProgressRecord) => r.kind === "log" && r.step === "FleetDeployment" && CANDIDATE_LOG.test(r.message);
    try {
      watch.once(isCandidate, (rec) => {
        killRunner(child.pid);
        candidate = CANDIDATE_LOG.exec((rec as { message: string }).message)?.[1] ?? "";
      });
      await watch.next("the candidate image to be created", isCandidate, 240000);
    } finally {
      // Whatever happened, the runner is gone before the next case starts.
      if (!candidate) killRunner(child.pid);
      await done;
      watch.close();
      await waitRunnerGone(child.pid);
    }
    const run = await done;
    if (!candidate) throw new Error(`no candidate image was created:\n${run.stderr}`);
    return { candidate, run };
  }

  before(async function () {
    const first = await zcp.run(["release", "--env", "local", "--version", "c1"]);
    expect(first.code, first.stderr).to.equal(0);
  });

  it("the same version again adopts the candidate left behind and promotes it; no second image is baked", async function () {
    const parameterBefore = await zcp.imageParameter();
    const latestBefore = await zcp.latest();
    const { candidate, run } = await interruptAfterCandidate("c2");
    expect(run.code, "the runner was killed").to.equal(null);

    // What the table says is left: a candidate image; the image parameter and latest.json not moved.
    expect((await images()).filter((i) => i.version === "c2").map((i) => [i.imageId, i.stage])).to.deep.equal([[candidate, "candidate"]]);
    expect(await zcp.imageParameter(), "the image parameter moves only in its own step").to.deep.equal(parameterBefore);
    expect((await zcp.latest())?.etag, "latest.json untouched").to.equal(latestBefore?.etag);

    const next = await zcp.run(["release", "--env", "local", "--version", "c2", "--json"]);
    expect(next.code, next.stderr).to.equal(0);
    expect(next.stderr).to.match(/recovered: removed the lock of an interrupted release/);
    expect(next.stderr).to.match(new RegExp(`image ${candidate} of c2 exists already; the release will use it`));
    const summary = JSON.parse(next.stdout) as { version: string; imageId: string; imageParameterVersion: number };
    expect(summary.imageId, "the release uses the candidate it found").to.equal(candidate);
    expect((await images()).filter((i) => i.version === "c2").map((i) => [i.imageId, i.stage])).to.deep.equal([[candidate, "released"]]);
    expect(await zcp.imageParameter()).to.deep.equal({ version: summary.imageParameterVersion, imageId: candidate });
    expect((await zcp.latest())?.body).to.include({ version: "c2", imageId: candidate });
    expect(Object.values(await wholeReleases(zcp))).to.deep.equal(["c2", "c2", "c2"]);
  });

  it("another version bakes its own image, and its retention removes the candidate left behind", async function () {
    const { candidate } = await interruptAfterCandidate("c3");
    expect((await images()).find((i) => i.imageId === candidate)?.stage).to.equal("candidate");

    const next = await zcp.run(["release", "--env", "local", "--version", "c4", "--json"]);
    expect(next.code, next.stderr).to.equal(0);
    const summary = JSON.parse(next.stdout) as { imageId: string };
    expect(summary.imageId, "c4 has an image of its own").to.not.equal(candidate);
    const after = await images();
    expect(after.find((i) => i.imageId === summary.imageId)).to.include({ version: "c4", stage: "released" });
    expect(after.map((i) => i.imageId), "the candidate of the release that never finished is deregistered").to.not.include(candidate);
    expect(Object.values(await wholeReleases(zcp))).to.deep.equal(["c4", "c4", "c4"]);
  });
});
