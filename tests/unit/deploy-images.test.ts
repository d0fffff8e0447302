/**
 * Image bake: reuse by tags, the CreateImage request, waiting with progress, and retention
 * that never removes a referenced image.
 */
import { expect } from "chai";
import {
  CreateImageCommand,
  CreateTagsCommand,
  DeleteSnapshotCommand,
  DeregisterImageCommand,
  DescribeImagesCommand,
  DescribeInstancesCommand,
  DescribeLaunchTemplateVersionsCommand,
  type Image,
} from "@aws-sdk/client-ec2";
import { GetParameterHistoryCommand } from "@aws-sdk/client-ssm";
import { mockClient } from "aws-sdk-client-mock";
import {
  applyImageRetention,
  bakeImage,
  buildCreateImageInput,
  findImageForVersion,
  findOrCreateImage,
  imageStamp,
  waitForImageAvailable,
} from "../../deploy/aws/images.js";
import { DeadlineExceededError, StepError } from "../../shared/errors.js";
import { awsError, fakeClock, offlineEc2, offlineSsm } from "../fixtures/aws/clients.js";
import { ec2ImageSimulator } from "../fixtures/aws/ec2-image-simulator.js";
import { baseTags } from "../../shared/tags.js";

const SHA = "b".repeat(64);
const REQ = { instanceId: "i-0abc", app: "shop", env: "dev", version: "v2", sha256: SHA, noReboot: true, stamp: "20260426T101500Z" };

function image(id: string, created: string, state = "available", version = "v1"): Image {
  return {
    ImageId: id,
    Name: `zcp-shop-dev-${version}-x`,
    State: state as Image["State"],
    CreationDate: created,
    Tags: [
      { Key: "zcp:app", Value: "shop" },
      { Key: "zcp:env", Value: "dev" },
      { Key: "zcp:version", Value: version },
    ],
    BlockDeviceMappings: [{ DeviceName: "/dev/xvda", Ebs: { SnapshotId: `snap-${id.slice(4)}` } }],
  };
}

describe("deploy/aws/images", function () {
  let clock = fakeClock();
  let pacing = { sleep: clock.sleep, now: clock.now, log: clock.log, random: clock.random };
  beforeEach(function () {
    clock = fakeClock();
    pacing = { sleep: clock.sleep, now: clock.now, log: clock.log, random: clock.random };
  });

  it("finds this version's image by its zcp tags, preferring available and newest", async function () {
    const ec2 = offlineEc2();
    const mock = mockClient(ec2);
    mock.on(DescribeImagesCommand).resolves({
      Images: [
        image("ami-0old", "2026-01-01T00:00:00.000Z", "available", "v2"),
        image("ami-0bad", "2026-01-03T00:00:00.000Z", "failed", "v2"),
        image("ami-0new", "2026-01-02T00:00:00.000Z", "available", "v2"),
        image("ami-0pen", "2026-01-04T00:00:00.000Z", "pending", "v2"),
      ],
    });
    const found = await findImageForVersion(ec2, { app: "shop", env: "dev", version: "v2" }, pacing);
    expect(found?.imageId).to.equal("ami-0new");
    expect(mock.commandCalls(DescribeImagesCommand)[0]?.args[0].input).to.deep.equal({
      Owners: ["self"],
      Filters: [
        { Name: "tag:zcp:app", Values: ["shop"] },
        { Name: "tag:zcp:env", Values: ["dev"] },
        { Name: "tag:zcp:version", Values: ["v2"] },
      ],
    });
  });

  it("reuses the existing image on a retried bake instead of creating a second", async function () {
    const ec2 = offlineEc2();
    const mock = mockClient(ec2);
    mock.on(DescribeImagesCommand).resolves({ Images: [image("ami-0pen", "2026-01-04T00:00:00.000Z", "pending", "v2")] });
    const got = await findOrCreateImage(ec2, REQ, pacing);
    expect(got).to.deep.equal({ imageId: "ami-0pen", name: "zcp-shop-dev-v2-x", reused: true });
    expect(mock.commandCalls(CreateImageCommand)).to.have.length(0);
  });

  it("creates the image with NoReboot from config and tags on the image and its snapshots", async function () {
    const ec2 = offlineEc2();
    const mock = mockClient(ec2);
    mock.on(DescribeImagesCommand).resolves({ Images: [] });
    mock.on(CreateImageCommand).resolves({ ImageId: "ami-0fresh" });
    const got = await findOrCreateImage(ec2, REQ, pacing);
    expect(got).to.deep.equal({ imageId: "ami-0fresh", name: "zcp-shop-dev-v2-20260426T101500Z", reused: false });
    const tags = [
      { Key: "Name", Value: "zcp-shop-dev-v2-20260426T101500Z" },
      { Key: "zcp:app", Value: "shop" },
      { Key: "zcp:env", Value: "dev" },
      { Key: "zcp:image-stage", Value: "released" },
      { Key: "zcp:managed-by", Value: "zcp" },
      { Key: "zcp:sha256", Value: SHA },
      { Key: "zcp:version", Value: "v2" },
    ];
    expect(mock.commandCalls(CreateImageCommand)[0]?.args[0].input).to.deep.equal({
      InstanceId: "i-0abc",
      Name: "zcp-shop-dev-v2-20260426T101500Z",
      Description: `zcp shop dev v2 (sha256 ${SHA.slice(0, 12)}) from i-0abc`,
      NoReboot: true,
      TagSpecifications: [
        { ResourceType: "image", Tags: tags },
        { ResourceType: "snapshot", Tags: tags },
      ],
    });
  });

  it("can tag snapshots after the bake instead of in CreateImage, for the local emulator", async function () {
    const ec2 = offlineEc2();
    const mock = mockClient(ec2);
    mock
      .on(DescribeImagesCommand)
      .resolvesOnce({ Images: [] })
      .resolves({ Images: [image("ami-0fresh", "2026-01-01T00:00:00.000Z", "available", "v2")] });
    mock.on(CreateImageCommand).resolves({ ImageId: "ami-0fresh" });
    mock.on(CreateTagsCommand).resolves({});
    const got = await bakeImage(ec2, { ...REQ, tagSnapshotsOnCreate: false }, { timeoutMinutes: 5, pacing });
    expect(got).to.deep.include({ reused: false });
    expect(got.image.imageId).to.equal("ami-0fresh");
    expect(mock.commandCalls(CreateImageCommand)[0]?.args[0].input.TagSpecifications?.map((t) => t.ResourceType)).to.deep.equal(["image"]);
    const [tagging] = mock.commandCalls(CreateTagsCommand);
    expect(tagging?.args[0].input.Resources).to.deep.equal(["snap-0fresh"]);
    expect(tagging?.args[0].input.Tags).to.deep.include({ Key: "zcp:sha256", Value: SHA });
  });

  it("stamps image names without characters AMI names refuse", function () {
    expect(imageStamp(new Date("2026-04-26T10:15:00.123Z"))).to.equal("20260426T101500Z");
    const { stamp: _stamp, ...unstamped } = REQ;
    const input = buildCreateImageInput({ ...unstamped, noReboot: false }, new Date("2026-04-26T10:15:00Z"));
    expect(input.Name).to.equal("zcp-shop-dev-v2-20260426T101500Z");
    expect(input.NoReboot).to.equal(false);
  });

  it("waits through not-yet-visible and pending, logging AmiAvailable progress", async function () {
    const ec2 = offlineEc2();
    const mock = mockClient(ec2);
    mock
      .on(DescribeImagesCommand)
      .rejectsOnce(awsError("InvalidAMIID.NotFound"))
      .resolvesOnce({ Images: [image("ami-0fresh", "x", "pending")] })
      .resolvesOnce({ Images: [image("ami-0fresh", "x", "pending")] })
      .resolves({ Images: [image("ami-0fresh", "x", "available")] });
    const img = await waitForImageAvailable(ec2, "ami-0fresh", { timeoutMinutes: 30, pacing });
    expect(img.state).to.equal("available");
    expect(mock.commandCalls(DescribeImagesCommand)[0]?.args[0].input).to.deep.equal({ ImageIds: ["ami-0fresh"] });
    expect(clock.lines).to.have.length(3);
    expect(clock.lines[0]).to.match(/^AmiAvailable: attempt 1\/120 ami-0fresh state=not-visible-yet \(0s\)$/);
    expect(clock.lines[2]).to.match(/^AmiAvailable: attempt 3\/120 ami-0fresh state=pending \(\d+s\)$/);
  });

  it("fails clearly when the image enters the failed state", async function () {
    const ec2 = offlineEc2();
    mockClient(ec2)
      .on(DescribeImagesCommand)
      .resolvesOnce({ Images: [image("ami-0fresh", "x", "pending")] })
      .resolves({ Images: [{ ...image("ami-0fresh", "x", "failed"), StateReason: { Code: "Client.Error", Message: "snapshot failed" } }] });
    const err = await waitForImageAvailable(ec2, "ami-0fresh", { timeoutMinutes: 30, pacing }).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(err).to.be.instanceOf(StepError);
    expect(err?.message).to.equal(
      'Waiting for image ami-0fresh failed: the image entered state "failed" (snapshot failed) and will never become available',
    );
  });

  it("gives up at the configured deadline with the last state", async function () {
    const ec2 = offlineEc2();
    mockClient(ec2).on(DescribeImagesCommand).resolves({ Images: [image("ami-0fresh", "x", "pending")] });
    const err = await waitForImageAvailable(ec2, "ami-0fresh", { timeoutMinutes: 2, pacing }).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(err).to.be.instanceOf(DeadlineExceededError);
    expect(err?.message).to.match(/^image ami-0fresh was not available within 2 minutes \(last state pending\)/);
    expect(clock.now() - 1_700_000_000_000).to.be.at.most(120_000);
  });

  describe("retention", function () {
    const images = [
      image("ami-0006", "2026-01-06T00:00:00.000Z", "pending", "v6"),
      image("ami-0005", "2026-01-05T00:00:00.000Z", "available", "v5"),
      image("ami-0004", "2026-01-04T00:00:00.000Z", "available", "v4"),
      image("ami-0003", "2026-01-03T00:00:00.000Z", "available", "v3"),
      image("ami-0002", "2026-01-02T00:00:00.000Z", "available", "v2"),
      image("ami-0001", "2026-01-01T00:00:00.000Z", "available", "v1"),
    ];

    function retentionMock() {
      const ec2 = offlineEc2();
      const mock = mockClient(ec2);
      mock.on(DescribeImagesCommand).resolves({ Images: images });
      mock.on(DescribeLaunchTemplateVersionsCommand).resolves({
        LaunchTemplateVersions: [
          { VersionNumber: 1, LaunchTemplateData: { ImageId: "ami-0001" } },
          { VersionNumber: 2, LaunchTemplateData: {} },
          { VersionNumber: 3, DefaultVersion: true, LaunchTemplateData: { ImageId: "ami-0005" } },
        ],
      });
      mock.on(DescribeInstancesCommand).resolves({ Reservations: [{ Instances: [{ InstanceId: "i-0old", ImageId: "ami-0003" }] }] });
      mock.on(DeregisterImageCommand).callsFake((input: { ImageId?: string }) => ({
        Return: true,
        DeleteSnapshotResults: [{ SnapshotId: `snap-${(input.ImageId ?? "").slice(4)}`, ReturnCode: "success" }],
      }));
      mock.on(DeleteSnapshotCommand).resolves({});
      return { ec2, mock };
    }

    it("keeps the newest N and every image a template version or live instance uses; removes the rest with snapshots", async function () {
      const { ec2, mock } = retentionMock();
      const result = await applyImageRetention(ec2, { app: "shop", env: "dev", keep: 2, launchTemplateId: "lt-0123" }, pacing);

      expect(result.kept.map((k) => [k.imageId, k.reasons])).to.deep.equal([
        ["ami-0006", ["not finished yet (state pending)"]],
        ["ami-0005", ["one of the newest 2", "launch template version lt-0123:3 (default)"]],
        ["ami-0004", ["one of the newest 2"]],
        ["ami-0003", ["used by instance i-0old"]],
        ["ami-0001", ["launch template version lt-0123:1"]],
      ]);
      expect(result.removed).to.deep.equal([
        { imageId: "ami-0002", name: "zcp-shop-dev-v2-x", version: "v2", reason: "older than the newest 2 and referenced by nothing", snapshotIds: ["snap-0002"] },
      ]);
      // One call frees the image and its snapshot; no separate DeleteSnapshot.
      expect(mock.commandCalls(DeregisterImageCommand).map((c) => c.args[0].input)).to.deep.equal([{ ImageId: "ami-0002", DeleteAssociatedSnapshots: true }]);
      expect(mock.commandCalls(DeleteSnapshotCommand)).to.have.length(0);
      expect(mock.commandCalls(DescribeLaunchTemplateVersionsCommand)[0]?.args[0].input).to.deep.equal({ LaunchTemplateId: "lt-0123", MaxResults: 200 });
      expect(mock.commandCalls(DescribeInstancesCommand)[0]?.args[0].input).to.deep.equal({
        Filters: [
          { Name: "image-id", Values: images.map((i) => i.ImageId) },
          { Name: "instance-state-name", Values: ["pending", "running"] },
        ],
        MaxResults: 1000,
      });
    });

    it("decides without deleting anything in a dry run, and honours protected images", async function () {
      const { ec2, mock } = retentionMock();
      const result = await applyImageRetention(ec2, { app: "shop", env: "dev", keep: 1, launchTemplateId: "lt-0123", protectImageIds: ["ami-0002"], dryRun: true }, pacing);
      expect(result.removed.map((r) => r.imageId)).to.deep.equal(["ami-0004"]);
      expect(result.kept.find((k) => k.imageId === "ami-0002")?.reasons).to.deep.equal(["protected by this release"]);
      expect(mock.commandCalls(DeregisterImageCommand)).to.have.length(0);
      expect(mock.commandCalls(DeleteSnapshotCommand)).to.have.length(0);
    });

    it("refuses to keep fewer than one image", async function () {
      const { ec2 } = retentionMock();
      const err = await applyImageRetention(ec2, { app: "shop", env: "dev", keep: 0 }, pacing).then(
        () => undefined,
        (e: unknown) => e as Error,
      );
      expect(err?.message).to.equal("keepImages: must be a whole number of at least 1, got 0");
    });
  });

  describe("retention against the EC2 image simulator", function () {
    const DAY = 86_400_000;
    const T0 = Date.parse("2026-01-01T00:00:00.000Z");
    const PARAMETER = "/zcp/shop/dev/image-id";

    /** Images v1..vN baked a day apart (vN newest), as earlier releases left them. */
    function seeded(n: number, launchTemplateVersions: { versionNumber: number; imageId?: string; isDefault?: boolean }[] = []) {
      const ec2 = offlineEc2();
      const sim = ec2ImageSimulator(ec2, { now: clock.now, availableAfterMs: 0, launchTemplateVersions });
      const ids: string[] = [];
      for (let i = 1; i <= n; i++) {
        ids.push(sim.seedImage({ ...baseTags("shop", "dev"), "zcp:version": `v${i}`, "zcp:image-stage": "released", Name: `zcp-shop-dev-v${i}` }, T0 + i * DAY));
      }
      return { ec2, sim, ids };
    }

    /** The image parameter's history as GetParameterHistory returns it: oldest version first. */
    function parameterHistory(values: string[]) {
      const ssm = offlineSsm();
      const mock = mockClient(ssm);
      mock.on(GetParameterHistoryCommand).resolves({
        Parameters: values.map((Value, i) => ({ Name: PARAMETER, Type: "String", DataType: "aws:ec2:image", Value, Version: i + 1 })),
      });
      return { ssm, mock };
    }

    it("frees an old image and its snapshot with one DeregisterImage (DeleteAssociatedSnapshots), no separate snapshot delete", async function () {
      const { ec2, sim, ids } = seeded(3);
      const [v1, v2, v3] = ids as [string, string, string];
      const snapshotOf = (id: string) => sim.image(id)?.snapshotId ?? "";
      const result = await applyImageRetention(ec2, { app: "shop", env: "dev", keep: 1 }, pacing);
      sim.restore();

      expect(result.removed.map((r) => [r.imageId, r.snapshotIds])).to.deep.equal([
        [v2, [snapshotOf(v2)]],
        [v1, [snapshotOf(v1)]],
      ]);
      expect(sim.liveSnapshots()).to.deep.equal([snapshotOf(v3)]);
      const deregisters = sim.calls.filter((c) => c.name === "DeregisterImage").map((c) => c.input);
      expect(deregisters).to.deep.equal([
        { ImageId: v2, DeleteAssociatedSnapshots: true },
        { ImageId: v1, DeleteAssociatedSnapshots: true },
      ]);
      expect(sim.calls.filter((c) => c.name === "DeleteSnapshot"), "no second call per snapshot").to.have.length(0);
    });

    it("never removes the image the image parameter names, nor those of its kept history (a rollback's target)", async function () {
      const { ec2, sim, ids } = seeded(5);
      const [v1, v2, v3, v4, v5] = ids as [string, string, string, string, string];
      // The parameter named v1, then v3, and names v2 now (a rollback from v3 to v2).
      const { ssm, mock } = parameterHistory([v1, v3, v2]);
      const result = await applyImageRetention(ec2, { app: "shop", env: "dev", keep: 2, imageParameter: { ssm, name: PARAMETER } }, pacing);
      sim.restore();

      expect(result.kept.map((k) => [k.imageId, k.reasons])).to.deep.equal([
        [v5, ["one of the newest 2"]],
        [v4, ["one of the newest 2"]],
        [v3, [`image parameter version ${PARAMETER}:2`]],
        [v2, [`image parameter version ${PARAMETER}:3 (current)`]],
      ]);
      // v1 is only in history older than the newest 2 parameter versions.
      expect(result.removed.map((r) => r.imageId)).to.deep.equal([v1]);
      expect(sim.image(v2)?.deregistered).to.equal(false);
      expect(sim.image(v3)?.deregistered).to.equal(false);
      expect(mock.commandCalls(GetParameterHistoryCommand)[0]?.args[0].input).to.deep.equal({ Name: PARAMETER, MaxResults: 50 });
    });

    it("keeps an image a launch-template version from before the parameter names; a resolve:ssm version names none", async function () {
      const { ec2, sim, ids } = seeded(4);
      const [v1, v2, v3, v4] = ids as [string, string, string, string];
      sim.templateVersions.push({ versionNumber: 1, imageId: v1 }, { versionNumber: 2, imageId: `resolve:ssm:${PARAMETER}`, isDefault: true });
      const result = await applyImageRetention(ec2, { app: "shop", env: "dev", keep: 1, launchTemplateId: "lt-0sim" }, pacing);
      sim.restore();
      expect(result.kept.map((k) => [k.imageId, k.reasons])).to.deep.equal([
        [v4, ["one of the newest 1"]],
        [v1, ["launch template version lt-0sim:1"]],
      ]);
      expect(result.removed.map((r) => r.imageId)).to.deep.equal([v3, v2]);
    });
  });
});
