/**
 * Release artifacts in S3. An artifact key names a version, and a version's content never
 * changes: uploading different bytes under an existing key is refused, uploading the same
 * bytes again is a no-op. The sha256 travels as object metadata (`zcp-sha256`) and as S3's
 * own ChecksumSHA256, so S3 rejects a corrupted upload and `verifyArtifact` can check later.
 */
import { HeadObjectCommand, PutObjectCommand, type PutObjectCommandInput, type S3Client } from "@aws-sdk/client-s3";
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { ConfigError, StepError, describeError } from "../../shared/errors.js";
import { SHA256_RE } from "../../shared/naming.js";
import { awsCall, awsErrorName, awsHttpStatus, type Pacing } from "./call.js";

/** Metadata keys zcp writes on artifacts (S3 returns them lower-cased, without `x-amz-meta-`). */
export const ARTIFACT_METADATA = {
  sha256: "zcp-sha256",
  commit: "zcp-commit",
  createdAt: "zcp-created-at",
} as const;

export interface ArtifactHead {
  bucket: string;
  key: string;
  size: number;
  /** Hex digest from `zcp-sha256`, else from S3's full-object ChecksumSHA256. */
  sha256?: string;
  etag?: string;
  versionId?: string;
  metadata: Record<string, string>;
}

export function s3Uri(bucket: string, key: string): string {
  return `s3://${bucket}/${key}`;
}

/** S3 checksums are base64 of the raw digest; zcp speaks hex everywhere else. */
export function sha256HexToBase64(hex: string): string {
  return Buffer.from(hex, "hex").toString("base64");
}

export function sha256Base64ToHex(b64: string): string {
  return Buffer.from(b64, "base64").toString("hex");
}

export function isNotFound(err: unknown): boolean {
  const name = awsErrorName(err);
  return name === "NotFound" || name === "NoSuchKey" || awsHttpStatus(err) === 404;
}

/** Size, sha256 and ETag of an artifact, or undefined when there is none under the key. */
export async function headArtifact(s3: S3Client, bucket: string, key: string, pacing: Pacing = {}): Promise<ArtifactHead | undefined> {
  let out;
  try {
    out = await awsCall(
      "Artifact lookup of",
      s3Uri(bucket, key),
      () => s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key, ChecksumMode: "ENABLED" })),
      pacing,
    );
  } catch (err) {
    if (isNotFound(err)) return undefined;
    // Without s3:ListBucket, S3 answers 403 instead of 404 for a missing key.
    if (awsHttpStatus(err) === 403 && err instanceof StepError) {
      const hint = new Error(`${describeError(err.cause)} (a missing object reads as 403 without s3:ListBucket on the prefix)`);
      throw new StepError("Artifact lookup of", s3Uri(bucket, key), hint);
    }
    throw err;
  }
  const metadata = { ...(out.Metadata ?? {}) };
  const fromMeta = metadata[ARTIFACT_METADATA.sha256]?.toLowerCase();
  // A multipart checksum ("…-3") is a checksum of part checksums, not of the object.
  const fromChecksum =
    out.ChecksumSHA256 && !out.ChecksumSHA256.includes("-") && out.ChecksumType !== "COMPOSITE" ? sha256Base64ToHex(out.ChecksumSHA256) : undefined;
  const sha256 = fromMeta && SHA256_RE.test(fromMeta) ? fromMeta : fromChecksum;
  return {
    bucket,
    key,
    size: out.ContentLength ?? 0,
    ...(sha256 ? { sha256 } : {}),
    ...(out.ETag ? { etag: out.ETag } : {}),
    ...(out.VersionId ? { versionId: out.VersionId } : {}),
    metadata,
  };
}

export interface ArtifactUpload {
  bucket: string;
  key: string;
  /** The package, in memory or as a file path. */
  body: Buffer | string;
  /** Hex sha256 of the body. */
  sha256: string;
  metadata: { commit?: string; createdAt: string };
}

export function buildPutArtifactInput(req: Omit<ArtifactUpload, "body">, body: Buffer): PutObjectCommandInput {
  return {
    Bucket: req.bucket,
    Key: req.key,
    Body: body,
    ContentLength: body.length,
    ContentType: "application/gzip",
    ChecksumSHA256: sha256HexToBase64(req.sha256),
    Metadata: {
      [ARTIFACT_METADATA.sha256]: req.sha256,
      [ARTIFACT_METADATA.createdAt]: req.metadata.createdAt,
      ...(req.metadata.commit ? { [ARTIFACT_METADATA.commit]: req.metadata.commit } : {}),
    },
    // Fails with 412 if the key appeared since we looked: two builds racing on one version
    // cannot both win, and the loser compares digests below instead of overwriting.
    IfNoneMatch: "*",
  };
}

function immutableError(req: { bucket: string; key: string; sha256: string }, existing: ArtifactHead): ConfigError {
  const there = existing.sha256 ? `sha256 ${existing.sha256}` : "an object with no recorded sha256";
  return new ConfigError(
    "--version",
    `artifacts are immutable: ${s3Uri(req.bucket, req.key)} already holds ${there}, this build is sha256 ${req.sha256}; ` +
      "release the change under a new version",
  );
}

export interface UploadResult {
  /** False when an identical artifact was already there and nothing was sent. */
  uploaded: boolean;
  head: ArtifactHead;
}

/**
 * Uploads a release artifact once. Same key and same sha256 → reused, no PutObject; same key
 * and another sha256 → `ConfigError` on `--version`, nothing changed.
 */
export async function uploadArtifact(s3: S3Client, req: ArtifactUpload, pacing: Pacing = {}): Promise<UploadResult> {
  const sha256 = req.sha256.toLowerCase();
  if (!SHA256_RE.test(sha256)) throw new ConfigError("sha256", `must be 64 lower-case hex digits, got "${req.sha256}"`);
  const where = s3Uri(req.bucket, req.key);

  const compare = (existing: ArtifactHead): UploadResult => {
    if (existing.sha256 === sha256) return { uploaded: false, head: existing };
    throw immutableError({ ...req, sha256 }, existing);
  };

  const before = await headArtifact(s3, req.bucket, req.key, pacing);
  if (before) return compare(before);

  // Read only once we know we must send, so a reused artifact costs no disk read.
  const body = typeof req.body === "string" ? await readFile(req.body) : req.body;
  const actual = createHash("sha256").update(body).digest("hex");
  if (actual !== sha256) {
    throw new StepError("Artifact upload to", where, new Error(`the package's sha256 is ${actual}, not the ${sha256} it was released as`));
  }
  const input = buildPutArtifactInput({ ...req, sha256 }, body);
  // 409 ConditionalRequestConflict: another conditional write to the key is in flight; look again.
  for (let attempt = 1; ; attempt++) {
    try {
      const out = await awsCall("Artifact upload to", where, () => s3.send(new PutObjectCommand(input)), pacing);
      return {
        uploaded: true,
        head: {
          bucket: req.bucket,
          key: req.key,
          size: body.length,
          sha256,
          ...(out.ETag ? { etag: out.ETag } : {}),
          ...(out.VersionId ? { versionId: out.VersionId } : {}),
          metadata: input.Metadata ?? {},
        },
      };
    } catch (err) {
      const status = awsHttpStatus(err);
      const lost = awsErrorName(err) === "PreconditionFailed" || status === 412;
      const conflict = awsErrorName(err) === "ConditionalRequestConflict" || status === 409;
      if (!lost && !(conflict && attempt < 3)) throw err;
      const now = await headArtifact(s3, req.bucket, req.key, pacing);
      if (now) return compare(now);
      if (lost) throw err;
    }
  }
}

export type ArtifactVerification =
  | { ok: true; head: ArtifactHead }
  | { ok: false; reason: string; head?: ArtifactHead };

/** For the Artifact provider: the object exists and carries the expected sha256. */
export async function verifyArtifact(
  s3: S3Client,
  bucket: string,
  key: string,
  sha256: string,
  pacing: Pacing = {},
): Promise<ArtifactVerification> {
  const head = await headArtifact(s3, bucket, key, pacing);
  const where = s3Uri(bucket, key);
  if (!head) return { ok: false, reason: `${where} does not exist; upload the artifact before releasing it` };
  if (!head.sha256) return { ok: false, reason: `${where} has no recorded sha256 (no ${ARTIFACT_METADATA.sha256} metadata or checksum)`, head };
  if (head.sha256 !== sha256.toLowerCase()) {
    return { ok: false, reason: `${where} has sha256 ${head.sha256}, expected ${sha256.toLowerCase()}`, head };
  }
  return { ok: true, head };
}
