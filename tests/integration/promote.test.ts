/**
 * `zcp promote` against the emulator's S3: two environments' buckets, the artifact built once
 * in dev, its exact bytes copied to prod, and every way it must refuse.
 */
import { CreateBucketCommand, GetObjectCommand, GetObjectTaggingCommand, PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { expect } from "chai";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { uploadArtifact } from "../../deploy/aws/artifacts.js";
import { buildArtifact } from "../../deploy/build/index.js";
import { exampleAppDir } from "../../deploy/local/fleet.js";
import { promoteArtifact, type ArtifactStore } from "../../deploy/promote.js";
import { ConfigError, StepError } from "../../shared/errors.js";
import { artifactKey } from "../../shared/naming.js";
import { tempDir } from "../fixtures/package/trees.js";
import { startEmulator, type Emulator } from "../helpers/emulator.js";

const APP = "zcp-example";

describe("zcp promote (emulator S3)", function () {
  this.timeout(180000);
  let emu: Emulator;
  let s3: S3Client;
  let work: string;
  let built: { path: string; sha256: string };
  const dev = (): ArtifactStore => ({ environment: "dev", app: APP, bucket: "zcp-dev-artifacts", s3 });
  const prod = (): ArtifactStore => ({ environment: "prod", app: APP, bucket: "zcp-prod-artifacts", s3 });

  before(async () => {
    emu = await startEmulator();
    s3 = new S3Client({
      endpoint: emu.endpoint,
      region: "us-east-1",
      forcePathStyle: true,
      credentials: { accessKeyId: emu.env.AWS_ACCESS_KEY_ID ?? "", secretAccessKey: emu.env.AWS_SECRET_ACCESS_KEY ?? "" },
    });
    work = tempDir("promote");
    built = await buildArtifact({ version: "1.0.0", source: { kind: "dir", dir: exampleAppDir() }, outDir: path.join(work, "out") });
  });

  beforeEach(async () => {
    await emu.reset();
    for (const bucket of [dev().bucket, prod().bucket]) await s3.send(new CreateBucketCommand({ Bucket: bucket }));
    await uploadArtifact(s3, { bucket: dev().bucket, key: artifactKey(APP, "1.0.0"), body: built.path, sha256: built.sha256, metadata: { commit: "0123abc", createdAt: "2026-12-01T00:00:00Z" } });
  });

  after(async () => {
    s3?.destroy();
    await emu?.stop();
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  const bytesOf = async (bucket: string, key: string): Promise<Buffer> => {
    const out = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    return Buffer.from(await out.Body!.transformToByteArray());
  };

  it("copies the exact bytes dev built into prod, with their sha256 and commit, and again is a no-op", async () => {
    const result = await promoteArtifact(dev(), prod(), "1.0.0");
    expect(result).to.include({ version: "1.0.0", sha256: built.sha256, copied: true });
    const key = artifactKey(APP, "1.0.0");
    const copied = await bytesOf(prod().bucket, key);
    expect(copied.equals(fs.readFileSync(built.path))).to.equal(true);
    expect(createHash("sha256").update(copied).digest("hex")).to.equal(built.sha256);
    // Like any upload, it may expire by age until a prod release makes it current (then `keep`).
    const tags = await s3.send(new GetObjectTaggingCommand({ Bucket: prod().bucket, Key: key }));
    expect(tags.TagSet).to.deep.equal([{ Key: "zcp:retention", Value: "expire" }]);

    const again = await promoteArtifact(dev(), prod(), "1.0.0");
    expect(again.copied).to.equal(false);
  });

  it("refuses when prod already has other bytes under that version, and leaves them", async () => {
    const key = artifactKey(APP, "1.0.0");
    const other = Buffer.from("a different build of 1.0.0");
    const otherSha = createHash("sha256").update(other).digest("hex");
    await s3.send(new PutObjectCommand({ Bucket: prod().bucket, Key: key, Body: other, Metadata: { "zcp-sha256": otherSha } }));

    const err = await promoteArtifact(dev(), prod(), "1.0.0").then(() => undefined, (e: unknown) => e);
    expect(err).to.be.instanceOf(ConfigError);
    expect((err as ConfigError).field).to.equal("--version");
    expect((err as Error).message).to.match(/already holds sha256 .* versions are immutable, nothing was copied/);
    expect((await bytesOf(prod().bucket, key)).equals(other)).to.equal(true);
  });

  it("refuses source bytes that do not match their recorded sha256, and copies nothing", async () => {
    // A dev object whose bytes were replaced after the build recorded their digest.
    const key = artifactKey(APP, "1.0.0");
    await s3.send(new PutObjectCommand({ Bucket: dev().bucket, Key: key, Body: Buffer.from("tampered"), Metadata: { "zcp-sha256": built.sha256 } }));
    const err = await promoteArtifact(dev(), prod(), "1.0.0").then(() => undefined, (e: unknown) => e);
    expect(err).to.be.instanceOf(StepError);
    expect((err as Error).message).to.match(/not the [0-9a-f]{64} recorded for them; nothing was copied/);
    const there = await s3.send(new GetObjectCommand({ Bucket: prod().bucket, Key: key })).then(() => true, () => false);
    expect(there).to.equal(false);
  });

  it("refuses a version dev does not have, the same environment twice, and another app", async () => {
    const missing = await promoteArtifact(dev(), prod(), "9.9.9").then(() => undefined, (e: unknown) => e);
    expect((missing as ConfigError).field).to.equal("--version");
    expect((missing as Error).message).to.match(/no artifact for version 9\.9\.9 in dev/);
    const same = await promoteArtifact(dev(), dev(), "1.0.0").then(() => undefined, (e: unknown) => e);
    expect((same as ConfigError).field).to.equal("--to");
    const otherApp = await promoteArtifact(dev(), { ...prod(), app: "billing" }, "1.0.0").then(() => undefined, (e: unknown) => e);
    expect((otherApp as Error).message).to.match(/only the same app can be promoted/);
  });
});
