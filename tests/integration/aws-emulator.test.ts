/**
 * The AWS-facing half of the release runner against the AWS emulator: the same requests the
 * unit tests assert on, sent for real to moto on 127.0.0.1.
 *
 * What the emulator does not model, and where that is covered instead:
 * - SSM runs nothing and has no ListCommandInvocations; SendCommand is checked for acceptance
 *   and round-trip (ListCommands), the polling in the mocked unit tests.
 * - SSM does not validate an `aws:ec2:image` value against the account's images, and EC2
 *   does not resolve a template's `resolve:ssm:` image at launch; the asynchronous validation
 *   is covered by the mocked unit tests.
 * - DeregisterImage ignores DeleteAssociatedSnapshots and reports no DeleteSnapshotResults;
 *   retention then deletes the snapshots one by one (the fallback this covers).
 * - Images are available at once; waiting through `pending` is covered by the unit tests.
 */
import { expect } from "chai";
import { createHash } from "node:crypto";
import { CreateAutoScalingGroupCommand } from "@aws-sdk/client-auto-scaling";
import {
  CreateLaunchTemplateCommand,
  DescribeImagesCommand,
  DescribeSnapshotsCommand,
  RunInstancesCommand,
  type EC2Client,
} from "@aws-sdk/client-ec2";
import { CreateBucketCommand, PutObjectCommand } from "@aws-sdk/client-s3";
import { GetCommandInvocationCommand, ListCommandsCommand, PutParameterCommand, SendCommandCommand } from "@aws-sdk/client-ssm";
import { emulatorClients, sharedEmulator, type Emulator } from "../helpers/emulator.js";
import { destroyAwsClients, type AwsClients } from "../../deploy/aws/clients.js";
import { headArtifact, uploadArtifact, verifyArtifact } from "../../deploy/aws/artifacts.js";
import { nextLatestPointer, readLatestPointer, writeLatestPointer } from "../../deploy/aws/latest-pointer.js";
import { discoverFleet } from "../../deploy/aws/fleet.js";
import { applyImageRetention, bakeImage, findImageForVersion, findOrCreateImage, waitForImageAvailable } from "../../deploy/aws/images.js";
import { moveImageParameter, readImageParameter } from "../../deploy/aws/image-parameter.js";
import { buildGetCommandInvocationInput, buildListCommandsInput, buildSendCommandInput, ssmParameters } from "../../deploy/commands/ssm.js";
import { artifactKey, deployDocumentName, imageParameterName } from "../../shared/naming.js";
import { ConfigError, PointerRaceError } from "../../shared/errors.js";
import { baseTags } from "../../shared/tags.js";
import { tagList } from "../../deploy/aws/call.js";
import { PARAMS } from "../fixtures/aws/params.js";

const APP = "shop";
const ENV = "dev";
const BUCKET = "zcp-artifacts-test";
/** The emulator has images available at once; poll quickly anyway. */
const IMAGE_WAIT = { timeoutMinutes: 1, pollInitialDelayMs: 10, pollMaxDelayMs: 50 };

function sha256(b: Buffer): string {
  return createHash("sha256").update(b).digest("hex");
}

async function rejection(p: Promise<unknown>): Promise<Error> {
  return await p.then(
    () => {
      throw new Error("expected a rejection");
    },
    (e: unknown) => e as Error,
  );
}

/** An AMI the emulator ships with (the same ids after every reset), to launch instances from. */
let shippedImage: string | undefined;
async function baseImage(ec2: EC2Client): Promise<string> {
  if (shippedImage) return shippedImage;
  const out = await ec2.send(new DescribeImagesCommand({ Owners: ["amazon"] }));
  shippedImage = out.Images?.find((i) => i.ImageId && i.State === "available")?.ImageId;
  if (!shippedImage) throw new Error("the emulator offers no base image");
  return shippedImage;
}

async function runTagged(ec2: EC2Client, imageId: string, count: number, tags: Record<string, string>): Promise<string[]> {
  const out = await ec2.send(
    new RunInstancesCommand({
      ImageId: imageId,
      InstanceType: "t3.micro",
      MinCount: count,
      MaxCount: count,
      TagSpecifications: [{ ResourceType: "instance", Tags: tagList(tags) }],
    }),
  );
  return (out.Instances ?? []).map((i) => i.InstanceId ?? "");
}

describe("deploy/aws against the AWS emulator", function () {
  this.timeout(120_000);
  let emu: Emulator;
  let aws: AwsClients;

  before(async function () {
    emu = await sharedEmulator();
    aws = emulatorClients(emu);
  });
  after(async function () {
    if (aws) destroyAwsClients(aws);
    if (emu) await emu.stop();
  });
  beforeEach(async function () {
    await emu.reset();
  });

  describe("artifacts", function () {
    const body = Buffer.from("release package bytes\n");
    const key = artifactKey(APP, "v1");

    beforeEach(async function () {
      await aws.s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
    });

    it("uploads once, reuses identical bytes, refuses other bytes under the same version", async function () {
      const first = await uploadArtifact(aws.s3, { bucket: BUCKET, key, body, sha256: sha256(body), metadata: { commit: "abc123", createdAt: "2026-04-26T10:00:00Z" } });
      expect(first.uploaded).to.equal(true);

      const head = await headArtifact(aws.s3, BUCKET, key);
      expect(head).to.deep.include({ size: body.length, sha256: sha256(body) });
      expect(head?.metadata).to.deep.include({ "zcp-sha256": sha256(body), "zcp-commit": "abc123" });

      const again = await uploadArtifact(aws.s3, { bucket: BUCKET, key, body, sha256: sha256(body), metadata: { createdAt: "2026-04-26T11:00:00Z" } });
      expect(again.uploaded).to.equal(false);
      expect(again.head.etag).to.equal(head?.etag);
      expect((await headArtifact(aws.s3, BUCKET, key))?.metadata["zcp-created-at"]).to.equal("2026-04-26T10:00:00Z");

      const other = Buffer.from("different bytes\n");
      const err = await rejection(uploadArtifact(aws.s3, { bucket: BUCKET, key, body: other, sha256: sha256(other), metadata: { createdAt: "x" } }));
      expect(err).to.be.instanceOf(ConfigError);
      expect(err.message).to.match(/^--version: artifacts are immutable: /);

      expect(await verifyArtifact(aws.s3, BUCKET, key, sha256(body))).to.deep.include({ ok: true });
      expect(await verifyArtifact(aws.s3, BUCKET, key, sha256(other))).to.deep.include({ ok: false });
      expect(await verifyArtifact(aws.s3, BUCKET, artifactKey(APP, "v9"), sha256(body))).to.deep.include({ ok: false });
    });

    it("honours IfNoneMatch on PutObject, so a racing first upload cannot overwrite", async function () {
      await uploadArtifact(aws.s3, { bucket: BUCKET, key, body, sha256: sha256(body), metadata: { createdAt: "x" } });
      const err = await rejection(aws.s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: "other", IfNoneMatch: "*" })));
      expect(err.name).to.equal("PreconditionFailed");
    });
  });

  describe("latest pointer", function () {
    beforeEach(async function () {
      await aws.s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
    });

    it("moves only with a matching ETag: the emulator honours IfMatch and IfNoneMatch", async function () {
      expect(await readLatestPointer(aws.s3, BUCKET, APP)).to.equal(undefined);
      const v1 = nextLatestPointer(undefined, { version: "v1", key: artifactKey(APP, "v1"), sha256: "1".repeat(64), releasedAt: "2026-04-26T10:00:00Z" });
      const w1 = await writeLatestPointer(aws.s3, BUCKET, APP, v1, undefined);

      // A second "first" pointer loses: IfNoneMatch "*".
      const lostFirst = await rejection(writeLatestPointer(aws.s3, BUCKET, APP, { ...v1, version: "v1b" }, undefined));
      expect(lostFirst).to.be.instanceOf(PointerRaceError);
      expect(lostFirst.message).to.match(/it now points to v1 /);

      const read1 = await readLatestPointer(aws.s3, BUCKET, APP);
      expect(read1?.pointer).to.deep.equal(v1);
      expect(read1?.etag).to.equal(w1.etag);

      const v2 = nextLatestPointer(read1?.pointer, { version: "v2", key: artifactKey(APP, "v2"), sha256: "2".repeat(64), imageId: "ami-0abc", launchTemplateVersion: 2, releasedAt: "2026-04-26T11:00:00Z" });
      await writeLatestPointer(aws.s3, BUCKET, APP, v2, read1?.etag);
      expect((await readLatestPointer(aws.s3, BUCKET, APP))?.pointer).to.deep.equal({ ...v2, previous: "v1" });

      // A release that read v1's ETag and finishes after v2 moved the pointer: IfMatch fails.
      const stale = await rejection(writeLatestPointer(aws.s3, BUCKET, APP, { ...v1, version: "v3" }, read1?.etag));
      expect(stale).to.be.instanceOf(PointerRaceError);
      expect(stale.message).to.match(/it now points to v2 \(released 2026-04-26T11:00:00Z/);
    });
  });

  describe("fleet", function () {
    it("discovers running instances by app/env tags, and narrows to an ASG's in-service members", async function () {
      const ami = await baseImage(aws.ec2);
      const loose = await runTagged(aws.ec2, ami, 2, baseTags(APP, ENV));
      await runTagged(aws.ec2, ami, 1, baseTags(APP, "prod"));
      await runTagged(aws.ec2, ami, 1, baseTags("other", ENV));

      const lt = await aws.ec2.send(
        new CreateLaunchTemplateCommand({ LaunchTemplateName: "zcp-shop-dev", LaunchTemplateData: { ImageId: ami, InstanceType: "t3.micro" } }),
      );
      await aws.autoScaling.send(
        new CreateAutoScalingGroupCommand({
          AutoScalingGroupName: "shop-dev",
          LaunchTemplate: { LaunchTemplateId: lt.LaunchTemplate?.LaunchTemplateId ?? "", Version: "$Default" },
          MinSize: 2,
          MaxSize: 2,
          DesiredCapacity: 2,
          AvailabilityZones: ["us-east-1a"],
          Tags: Object.entries(baseTags(APP, ENV)).map(([Key, Value]) => ({ Key, Value, PropagateAtLaunch: true })),
        }),
      );

      const all = await discoverFleet({ ec2: aws.ec2 }, { app: APP, env: ENV });
      expect(all).to.have.length(4);
      expect(all.every((i) => i.tags["zcp:app"] === APP && i.tags["zcp:env"] === ENV && i.imageId === ami)).to.equal(true);
      const sorted = [...all].sort((a, b) => a.launchTime.getTime() - b.launchTime.getTime() || a.instanceId.localeCompare(b.instanceId));
      expect(all.map((i) => i.instanceId)).to.deep.equal(sorted.map((i) => i.instanceId));

      const inGroup = await discoverFleet({ ec2: aws.ec2, autoScaling: aws.autoScaling }, { app: APP, env: ENV, autoScalingGroupName: "shop-dev" });
      expect(inGroup).to.have.length(2);
      expect(inGroup.some((i) => loose.includes(i.instanceId))).to.equal(false);
    });
  });

  describe("images and the launch template", function () {
    it("bakes an image once per version, waits for it, and prunes without touching referenced ones (parameter, template, instance)", async function () {
      const ami = await baseImage(aws.ec2);
      const [source] = await runTagged(aws.ec2, ami, 1, baseTags(APP, ENV));
      // The emulator does not implement snapshot TagSpecifications on CreateImage.
      const bake = (version: string) => ({ instanceId: source ?? "", app: APP, env: ENV, version, sha256: sha256(Buffer.from(version)), noReboot: true, tagSnapshotsOnCreate: false });

      const v1 = await bakeImage(aws.ec2, bake("v1"), IMAGE_WAIT);
      expect(v1.reused).to.equal(false);
      expect(v1.image).to.deep.include({ state: "available" });
      expect(v1.image.tags).to.deep.include({ "zcp:app": APP, "zcp:env": ENV, "zcp:version": "v1", "zcp:sha256": sha256(Buffer.from("v1")) });
      const snaps = await aws.ec2.send(new DescribeSnapshotsCommand({ SnapshotIds: v1.image.snapshotIds }));
      expect(snaps.Snapshots?.[0]?.Tags).to.deep.include({ Key: "zcp:version", Value: "v1" });

      // A retried bake of the same version finds the image by its tags instead of making another.
      const retried = await bakeImage(aws.ec2, bake("v1"), IMAGE_WAIT);
      expect(retried).to.deep.include({ reused: true });
      expect(retried.image.imageId).to.equal(v1.image.imageId);
      expect((await findImageForVersion(aws.ec2, { app: APP, env: ENV, version: "v1" }))?.imageId).to.equal(v1.image.imageId);

      const v2 = await findOrCreateImage(aws.ec2, bake("v2"));
      const v3 = await findOrCreateImage(aws.ec2, bake("v3"));
      // The emulator stamps CreationDate to the second: make v4 unambiguously the newest.
      await new Promise((r) => setTimeout(r, 1100));
      const v4 = await findOrCreateImage(aws.ec2, bake("v4"));
      expect((await waitForImageAvailable(aws.ec2, v4.imageId, IMAGE_WAIT)).state).to.equal("available");
      await new Promise((r) => setTimeout(r, 1100));
      const v5 = await findOrCreateImage(aws.ec2, bake("v5"));
      await new Promise((r) => setTimeout(r, 1100));
      const v6 = await findOrCreateImage(aws.ec2, bake("v6"));
      // The image parameter named v6 first (version 1), then v5, and names v4 now (version 3).
      const parameter = imageParameterName(APP, ENV);
      await aws.ssm.send(new PutParameterCommand({ Name: parameter, Value: v6.imageId, Type: "String", DataType: "aws:ec2:image", Overwrite: true }));
      const first = (await readImageParameter(aws.ssm, parameter))?.version ?? 0;
      await moveImageParameter(aws.ssm, { name: parameter, imageId: v5.imageId });
      expect(await moveImageParameter(aws.ssm, { name: parameter, imageId: v4.imageId })).to.deep.include({ action: "moved", version: first + 2, previousImageId: v5.imageId });

      // v1 stays in the template's history, an instance runs v2, the parameter names v4.
      const lt = await aws.ec2.send(new CreateLaunchTemplateCommand({ LaunchTemplateName: "zcp-shop-dev", LaunchTemplateData: { ImageId: v1.image.imageId } }));
      const ltId = lt.LaunchTemplate?.LaunchTemplateId ?? "";
      await runTagged(aws.ec2, v2.imageId, 1, { Name: "still on v2" });
      const snapshotsOf = async (version: string) => (await findImageForVersion(aws.ec2, { app: APP, env: ENV, version }))?.snapshotIds ?? [];
      const v3Snapshots = await snapshotsOf("v3");
      const v5Snapshots = await snapshotsOf("v5");
      expect(v3Snapshots).to.have.length(1);

      // keep 2: the newest two (v6, v5) and the parameter's two newest versions (v4, v5) stay.
      const request = { app: APP, env: ENV, launchTemplateId: ltId, imageParameter: { ssm: aws.ssm, name: parameter } };
      const dry = await applyImageRetention(aws.ec2, { ...request, keep: 2, dryRun: true });
      expect(dry.removed.map((r) => r.imageId)).to.deep.equal([v3.imageId]);
      // keep 1: v4 is not among the newest, but new instances launch it; v5 is only in older history.
      const result = await applyImageRetention(aws.ec2, { ...request, keep: 1 });
      expect(Object.fromEntries(result.kept.map((k) => [k.imageId, k.reasons.join("; ").replace(/ i-[0-9a-f]+$/, " i-…")]))).to.deep.equal({
        [v6.imageId]: "one of the newest 1",
        [v4.imageId]: `image parameter version ${parameter}:${first + 2} (current)`,
        [v2.imageId]: "used by instance i-…",
        [v1.image.imageId]: `launch template version ${ltId}:1 (default)`,
      });
      expect(result.removed.map((r) => [r.imageId, r.snapshotIds])).to.deep.equal([
        [v5.imageId, v5Snapshots],
        [v3.imageId, v3Snapshots],
      ]);

      const left = await aws.ec2.send(new DescribeImagesCommand({ Owners: ["self"] }));
      expect((left.Images ?? []).map((i) => i.ImageId)).to.not.include.members([v3.imageId, v5.imageId]);
      const allSnapshots = await aws.ec2.send(new DescribeSnapshotsCommand({ OwnerIds: ["self"] }));
      const snapshotIds = (allSnapshots.Snapshots ?? []).map((s) => s.SnapshotId);
      for (const gone of [...v3Snapshots, ...v5Snapshots]) expect(snapshotIds).to.not.include(gone);
    });

    it("moves the image parameter a resolve:ssm template launches from, once", async function () {
      const ami = await baseImage(aws.ec2);
      const parameter = imageParameterName(APP, ENV);
      await aws.ssm.send(new PutParameterCommand({ Name: parameter, Value: ami, Type: "String", DataType: "aws:ec2:image", Overwrite: true }));
      const seeded = await readImageParameter(aws.ssm, parameter);
      const [source] = await runTagged(aws.ec2, ami, 1, baseTags(APP, ENV));
      const image = await findOrCreateImage(aws.ec2, { instanceId: source ?? "", app: APP, env: ENV, version: "v2", sha256: "2".repeat(64), noReboot: true, tagSnapshotsOnCreate: false });

      const first = await moveImageParameter(aws.ssm, { name: parameter, imageId: image.imageId });
      expect(first).to.deep.include({ action: "moved", previousImageId: ami, version: (seeded?.version ?? 0) + 1 });
      expect(await readImageParameter(aws.ssm, parameter)).to.deep.include({ imageId: image.imageId });

      const second = await moveImageParameter(aws.ssm, { name: parameter, imageId: image.imageId });
      expect(second).to.deep.include({ action: "unchanged", version: first.version });

      // A rollback moves it back to the earlier image.
      const back = await moveImageParameter(aws.ssm, { name: parameter, imageId: ami });
      expect(back).to.deep.include({ action: "moved", previousImageId: image.imageId, version: first.version + 1 });
    });
  });

  describe("ssm SendCommand", function () {
    it("accepts the deploy command by ids and by tags; document and parameters round-trip", async function () {
      const ami = await baseImage(aws.ec2);
      const ids = await runTagged(aws.ec2, ami, 2, baseTags(APP, ENV));
      const documentName = deployDocumentName(APP, ENV);

      const byIds = buildSendCommandInput({ documentName, params: PARAMS, targets: { instanceIds: ids }, timeoutS: 600, maxConcurrency: "1", maxErrors: "0" });
      const sent = await aws.ssm.send(new SendCommandCommand(byIds));
      const commandId = sent.Command?.CommandId ?? "";
      expect(commandId).to.match(/^[0-9a-f-]{36}$/);

      const listed = (await aws.ssm.send(new ListCommandsCommand(buildListCommandsInput(commandId)))).Commands?.[0];
      expect(listed).to.deep.include({ DocumentName: documentName, Comment: "zcp deploy shop v2", MaxConcurrency: "1", MaxErrors: "0", TimeoutSeconds: 600 });
      expect(listed?.Parameters).to.deep.equal({ ...ssmParameters(PARAMS), executionTimeout: ["600"] });
      expect([...(listed?.InstanceIds ?? [])].sort()).to.deep.equal([...ids].sort());

      const invocation = await aws.ssm.send(new GetCommandInvocationCommand(buildGetCommandInvocationInput(commandId, ids[0] ?? "")));
      expect(invocation).to.deep.include({ CommandId: commandId, InstanceId: ids[0], DocumentName: documentName });

      const byTags = buildSendCommandInput({ documentName, params: PARAMS, targets: { fleet: { app: APP, env: ENV } }, timeoutS: 600 });
      const tagged = await aws.ssm.send(new SendCommandCommand(byTags));
      const resolved = (await aws.ssm.send(new ListCommandsCommand(buildListCommandsInput(tagged.Command?.CommandId ?? "")))).Commands?.[0];
      expect(resolved?.Targets).to.deep.equal(byTags.Targets);
      expect([...(resolved?.InstanceIds ?? [])].sort()).to.deep.equal([...ids].sort());
    });
  });
});
