/**
 * Artifacts are immutable: the PutObject sent, reuse of identical bytes, refusal of different
 * bytes under the same version, and the race between two uploads of one version.
 */
import { expect } from "chai";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { HeadObjectCommand, PutObjectCommand } from "@aws-sdk/client-s3";
import { mockClient } from "aws-sdk-client-mock";
import { headArtifact, sha256HexToBase64, uploadArtifact, verifyArtifact } from "../../deploy/aws/artifacts.js";
import { ConfigError } from "../../shared/errors.js";
import { awsError, fakeClock, offlineS3 } from "../fixtures/aws/clients.js";

const BODY = Buffer.from("a release package\n");
const SHA = createHash("sha256").update(BODY).digest("hex");
const OTHER = "c".repeat(64);
const KEY = "releases/shop/v2.tar.gz";
const META = { commit: "0123abc", createdAt: "2026-04-26T10:00:00Z" };

describe("deploy/aws/artifacts", function () {
  const clock = fakeClock();
  const pacing = { sleep: clock.sleep, now: clock.now };

  it("uploads a new artifact with its sha256 as S3 checksum and metadata, only if the key is still free", async function () {
    const s3 = offlineS3();
    const mock = mockClient(s3);
    mock.on(HeadObjectCommand).rejects(awsError("NotFound", 404));
    mock.on(PutObjectCommand).resolves({ ETag: '"e1"' });
    const got = await uploadArtifact(s3, { bucket: "zcp-artifacts", key: KEY, body: BODY, sha256: SHA, metadata: META }, pacing);
    expect(got.uploaded).to.equal(true);
    expect(got.head).to.include({ sha256: SHA, etag: '"e1"', size: BODY.length });
    const [put] = mock.commandCalls(PutObjectCommand);
    expect(put?.args[0].input).to.deep.equal({
      Bucket: "zcp-artifacts",
      Key: KEY,
      Body: BODY,
      ContentLength: BODY.length,
      ContentType: "application/gzip",
      ChecksumSHA256: Buffer.from(SHA, "hex").toString("base64"),
      Metadata: { "zcp-sha256": SHA, "zcp-created-at": META.createdAt, "zcp-commit": META.commit },
      // Uploaded expiring: only latest.json's current and previous artifacts are kept forever.
      Tagging: "zcp%3Aretention=expire",
      IfNoneMatch: "*",
    });
    expect(mock.commandCalls(HeadObjectCommand)[0]?.args[0].input).to.deep.equal({ Bucket: "zcp-artifacts", Key: KEY, ChecksumMode: "ENABLED" });
  });

  it("reuses an identical artifact without sending PutObject", async function () {
    const s3 = offlineS3();
    const mock = mockClient(s3);
    mock.on(HeadObjectCommand).resolves({ ContentLength: BODY.length, ETag: '"e1"', Metadata: { "zcp-sha256": SHA } });
    const got = await uploadArtifact(s3, { bucket: "b", key: KEY, body: "/nonexistent/never-read.tar.gz", sha256: SHA, metadata: META }, pacing);
    expect(got.uploaded).to.equal(false);
    expect(mock.commandCalls(PutObjectCommand)).to.have.length(0);
  });

  it("refuses different bytes under an existing version with a --version configuration error", async function () {
    const s3 = offlineS3();
    const mock = mockClient(s3);
    mock.on(HeadObjectCommand).resolves({ ContentLength: 3, Metadata: { "zcp-sha256": OTHER } });
    const err = await uploadArtifact(s3, { bucket: "b", key: KEY, body: BODY, sha256: SHA, metadata: META }, pacing).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).to.be.instanceOf(ConfigError);
    expect((err as ConfigError).field).to.equal("--version");
    expect((err as ConfigError).message).to.equal(
      `--version: artifacts are immutable: s3://b/${KEY} already holds sha256 ${OTHER}, this build is sha256 ${SHA}; release the change under a new version`,
    );
    expect(mock.commandCalls(PutObjectCommand)).to.have.length(0);
  });

  it("settles a lost upload race by comparing with what the winner wrote", async function () {
    const s3 = offlineS3();
    const mock = mockClient(s3);
    mock
      .on(HeadObjectCommand)
      .rejectsOnce(awsError("NotFound", 404))
      .resolves({ ContentLength: BODY.length, ChecksumSHA256: sha256HexToBase64(SHA), ChecksumType: "FULL_OBJECT" });
    mock.on(PutObjectCommand).rejects(awsError("PreconditionFailed", 412, "At least one of the pre-conditions you specified did not hold"));
    const got = await uploadArtifact(s3, { bucket: "b", key: KEY, body: BODY, sha256: SHA, metadata: { createdAt: META.createdAt } }, pacing);
    expect(got).to.deep.include({ uploaded: false });
    expect(got.head.sha256).to.equal(SHA);
    expect(mock.commandCalls(PutObjectCommand)).to.have.length(1);
  });

  it("reads the body from a file path and refuses a body that does not match its sha256", async function () {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "zcp-artifact-"));
    try {
      const file = path.join(dir, "v2.tar.gz");
      fs.writeFileSync(file, BODY);
      const s3 = offlineS3();
      const mock = mockClient(s3);
      mock.on(HeadObjectCommand).rejects(awsError("NotFound", 404));
      mock.on(PutObjectCommand).resolves({ ETag: '"e2"' });
      const got = await uploadArtifact(s3, { bucket: "b", key: KEY, body: file, sha256: SHA, metadata: META }, pacing);
      expect(got.uploaded).to.equal(true);
      expect(Buffer.compare(mock.commandCalls(PutObjectCommand)[0]?.args[0].input.Body as Buffer, BODY)).to.equal(0);
      const err = await uploadArtifact(s3, { bucket: "b", key: KEY, body: file, sha256: OTHER, metadata: META }, pacing).then(
        () => undefined,
        (e: unknown) => e as Error,
      );
      expect(err?.message).to.equal(`Artifact upload to s3://b/${KEY} failed: the package's sha256 is ${SHA}, not the ${OTHER} it was released as`);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it("verifies an artifact: missing, mismatched, and matching by S3 checksum alone", async function () {
    const s3 = offlineS3();
    const mock = mockClient(s3);
    mock
      .on(HeadObjectCommand)
      .rejectsOnce(awsError("NotFound", 404))
      .resolvesOnce({ ContentLength: 1, Metadata: { "zcp-sha256": OTHER } })
      .resolves({ ContentLength: 1, ChecksumSHA256: sha256HexToBase64(SHA), ETag: '"e3"' });
    const missing = await verifyArtifact(s3, "b", KEY, SHA, pacing);
    expect(missing).to.deep.equal({ ok: false, reason: `s3://b/${KEY} does not exist; upload the artifact before releasing it` });
    const wrong = await verifyArtifact(s3, "b", KEY, SHA, pacing);
    expect(wrong.ok).to.equal(false);
    expect(wrong.ok === false && wrong.reason).to.equal(`s3://b/${KEY} has sha256 ${OTHER}, expected ${SHA}`);
    const right = await verifyArtifact(s3, "b", KEY, SHA, pacing);
    expect(right.ok).to.equal(true);
    expect(right.ok && right.head.etag).to.equal('"e3"');
  });

  it("wraps a refused lookup with the step and the object, hinting at the 403-for-missing quirk", async function () {
    const s3 = offlineS3();
    mockClient(s3).on(HeadObjectCommand).rejects(awsError("Forbidden", 403, "Forbidden"));
    const err = await headArtifact(s3, "b", KEY, pacing).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(err?.message).to.equal(
      `Artifact lookup of s3://b/${KEY} failed: Forbidden: Forbidden (a missing object reads as 403 without s3:ListBucket on the prefix)`,
    );
  });
});
