/**
 * Artifact retention on the emulator's S3: artifacts are uploaded tagged to expire, each
 * release (the LatestPointer step, as the release stack runs it) leaves the artifacts
 * latest.json names tagged `keep` and the rest `expire`, and under the foundation's lifecycle
 * rules (evaluated by the S3 lifecycle-filter rules of tests/fixtures/aws) the current and the
 * previous release never expire while the others do.
 */
import { CreateBucketCommand, GetObjectTaggingCommand, HeadObjectCommand, ListObjectsV2Command, PutBucketVersioningCommand, type S3Client } from "@aws-sdk/client-s3";
import { expect } from "chai";
import { createHash, randomBytes } from "node:crypto";
import { uploadArtifact } from "../../deploy/aws/artifacts.js";
import { readLatestPointer } from "../../deploy/aws/latest-pointer.js";
import { destroyAwsClients, type AwsClients } from "../../deploy/aws/clients.js";
import { promoteLatestPointer } from "../../deploy/steps/latest-pointer.js";
import { artifactLifecycleRules } from "../../infra/artifact-bucket.js";
import { artifactKey, artifactPrefix } from "../../shared/naming.js";
import { type LifecycleObject, type LifecycleRule, expiredBy } from "../fixtures/aws/s3-lifecycle.js";
import { type Emulator, emulatorClients, sharedEmulator } from "../helpers/emulator.js";

const APP = "web";
const BUCKET = "zcp-web-dev-retention";

describe("artifact retention tags across releases (emulator S3)", function () {
  this.timeout(120000);
  let emu: Emulator;
  let clients: AwsClients;
  let s3: S3Client;
  const savedEnv: Record<string, string | undefined> = {};

  before(async () => {
    emu = await sharedEmulator();
    clients = emulatorClients(emu);
    s3 = clients.s3;
    // The step builds its own clients from the environment, as in the release stack's host.
    for (const [k, v] of Object.entries(emu.env)) {
      savedEnv[k] = process.env[k];
      process.env[k] = v;
    }
    await s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
    await s3.send(new PutBucketVersioningCommand({ Bucket: BUCKET, VersioningConfiguration: { Status: "Enabled" } }));
    for (const version of ["v1", "v2", "v3", "v4"]) {
      const body = randomBytes(4096);
      await uploadArtifact(s3, {
        bucket: BUCKET,
        key: artifactKey(APP, version),
        body,
        sha256: createHash("sha256").update(body).digest("hex"),
        metadata: { createdAt: "2026-12-01T00:00:00Z" },
      });
    }
  });

  after(async () => {
    for (const [k, v] of Object.entries(savedEnv)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
    if (clients) destroyAwsClients(clients);
    await emu?.stop();
  });

  async function release(version: string): Promise<void> {
    const now = await readLatestPointer(s3, BUCKET, APP);
    const sha = (await s3.send(new HeadObjectCommand({ Bucket: BUCKET, Key: artifactKey(APP, version) }))).Metadata?.["zcp-sha256"] ?? "";
    await promoteLatestPointer({
      region: "us-east-1",
      bucket: BUCKET,
      app: APP,
      version,
      key: artifactKey(APP, version),
      sha256: sha,
      imageId: "",
      launchTemplateVersion: 0,
      expectedEtag: now?.etag ?? "",
    });
  }

  async function retention(): Promise<Record<string, string>> {
    const out: Record<string, string> = {};
    for (const version of ["v1", "v2", "v3", "v4"]) {
      const tags = await s3.send(new GetObjectTaggingCommand({ Bucket: BUCKET, Key: artifactKey(APP, version) }));
      out[version] = tags.TagSet?.find((t) => t.Key === "zcp:retention")?.Value ?? "(none)";
    }
    return out;
  }

  it("uploads every artifact tagged to expire", async () => {
    expect(await retention()).to.deep.equal({ v1: "expire", v2: "expire", v3: "expire", v4: "expire" });
  });

  it("keeps what latest.json names after each release and rollback, and lets the rest expire", async () => {
    await release("v1");
    expect(await retention()).to.deep.equal({ v1: "keep", v2: "expire", v3: "expire", v4: "expire" });
    await release("v2");
    expect(await retention()).to.deep.equal({ v1: "keep", v2: "keep", v3: "expire", v4: "expire" });
    await release("v3");
    expect(await retention()).to.deep.equal({ v1: "expire", v2: "keep", v3: "keep", v4: "expire" });
    await release("v4");
    expect(await retention()).to.deep.equal({ v1: "expire", v2: "expire", v3: "keep", v4: "keep" });
    // zcp rollback: the previous release becomes current, nothing drops out.
    await release("v3");
    expect(await retention()).to.deep.equal({ v1: "expire", v2: "expire", v3: "keep", v4: "keep" });
    // A rollback to an old release brings its artifact back to `keep`.
    await release("v1");
    expect(await retention()).to.deep.equal({ v1: "keep", v2: "expire", v3: "keep", v4: "expire" });
    const pointer = await readLatestPointer(s3, BUCKET, APP);
    expect(pointer?.pointer).to.include({ version: "v1", previous: "v3" });
  });

  it("leaves, under the bucket's lifecycle rules, the current and previous artifacts and latest.json forever, and expires the others", async () => {
    const rules = artifactLifecycleRules(artifactPrefix(APP), 365, 30);
    const listed = await s3.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: `${artifactPrefix(APP)}/` }));
    const objects: LifecycleObject[] = [];
    for (const o of listed.Contents ?? []) {
      const tags = await s3.send(new GetObjectTaggingCommand({ Bucket: BUCKET, Key: o.Key! }));
      objects.push({
        key: o.Key!,
        size: o.Size ?? 0,
        tags: Object.fromEntries((tags.TagSet ?? []).map((t) => [t.Key ?? "", t.Value ?? ""])),
        created: o.LastModified ?? new Date(),
      });
    }
    expect(objects.map((o) => o.key)).to.have.members([...["v1", "v2", "v3", "v4"].map((v) => artifactKey(APP, v)), `${artifactPrefix(APP)}/latest.json`]);
    const tenYearsOn = new Date(Date.now() + 3650 * 86_400_000);
    // Plain values: the Pulumi input type only also allows outputs.
    const gone = objects.filter((o) => expiredBy(rules as unknown as LifecycleRule[], o, tenYearsOn)).map((o) => o.key);
    expect(gone).to.have.members([artifactKey(APP, "v2"), artifactKey(APP, "v4")]);
  });
});
