/**
 * Release artifacts in S3. An artifact key names a version, and a version's content never
 * changes: uploading different bytes under an existing key is refused, uploading the same
 * bytes again is a no-op. The sha256 travels as object metadata (`zcp-sha256`) and as S3's
 * own ChecksumSHA256, so S3 rejects a corrupted upload and `verifyArtifact` can check later.
 *
 * Retention: artifacts are uploaded tagged `zcp:retention=expire`, the tag the bucket's expiry
 * rule requires (infra/artifact-bucket.ts); when `latest.json` moves, `retainReleasedArtifacts`
 * tags the artifacts it names (current and previous) `keep` and the one that dropped out back
 * to `expire`, so a rollback target can never age out of the bucket.
 */
import {
  GetObjectTaggingCommand,
  HeadObjectCommand,
  PutObjectCommand,
  PutObjectTaggingCommand,
  type PutObjectCommandInput,
  type PutObjectTaggingCommandInput,
  type S3Client,
  type Tag,
} from "@aws-sdk/client-s3";
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { ConfigError, StepError, describeError } from "../../shared/errors.js";
import { SHA256_RE, artifactKey } from "../../shared/naming.js";
import { TAG_RETENTION, type Retention } from "../../shared/tags.js";
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
      // Keeps the status, so callers can still tell a 403 from other failures.
      const hint = Object.assign(new Error(`${describeError(err.cause)} (a missing object reads as 403 without s3:ListBucket on the prefix)`), {
        $metadata: { httpStatusCode: 403 },
      });
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
    // Every new artifact can expire by age until a release makes it current (then `keep`).
    // The header is a URL-encoded query string (PutObject, x-amz-tagging).
    Tagging: new URLSearchParams({ [TAG_RETENTION]: "expire" satisfies Retention }).toString(),
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

/** The versions a `latest.json` names: the current release and the one it replaced. */
export interface PointedVersions {
  version: string;
  previous?: string | undefined;
}

export interface RetentionResult {
  /** Artifact keys now tagged `keep`. */
  kept: string[];
  /** Artifact keys put back to `expire`. */
  released: string[];
  /** Keys with no object (an artifact that already expired, or was never uploaded here). */
  missing: string[];
  /** Keys whose tag could not be set, with the error. */
  failed: { key: string; error: string }[];
}

/** The PutObjectTagging input that sets `zcp:retention` and keeps every other tag. */
export function buildRetentionTaggingInput(bucket: string, key: string, current: readonly Tag[], retention: Retention): PutObjectTaggingCommandInput {
  const others = current.filter((t) => t.Key !== TAG_RETENTION);
  return { Bucket: bucket, Key: key, Tagging: { TagSet: [...others, { Key: TAG_RETENTION, Value: retention }] } };
}

/** Sets `zcp:retention` on the current version of one artifact; false when there is no object. */
async function setRetention(s3: S3Client, bucket: string, key: string, retention: Retention, pacing: Pacing): Promise<boolean> {
  const where = s3Uri(bucket, key);
  let tags: Tag[];
  try {
    const out = await awsCall("Reading retention tag of", where, () => s3.send(new GetObjectTaggingCommand({ Bucket: bucket, Key: key })), pacing);
    tags = out.TagSet ?? [];
  } catch (err) {
    if (isNotFound(err)) return false;
    throw err;
  }
  if (tags.some((t) => t.Key === TAG_RETENTION && t.Value === retention)) return true;
  await awsCall("Setting retention tag of", where, () => s3.send(new PutObjectTaggingCommand(buildRetentionTaggingInput(bucket, key, tags, retention))), pacing);
  return true;
}

/**
 * After `latest.json` moved from `before` to `after`: the artifacts `after` names are tagged
 * `keep` (never expired by the bucket's lifecycle), and an artifact `before` named that
 * `after` does not is tagged `expire` again (it ages out after `zcp:artifacts.retainDays`
 * from its upload). Called once the pointer is written, so a release that lost the pointer
 * race changes no tag; `keep` goes first, so an interruption leaves an artifact kept, never
 * one expiring that is still named. A tag that cannot be set does not fail the release (the
 * pointer has moved): it is reported in `failed` and logged, and the next release, or this
 * one run again, sets it.
 */
export async function retainReleasedArtifacts(
  s3: S3Client,
  req: { bucket: string; app: string; before?: PointedVersions | undefined; after: PointedVersions },
  pacing: Pacing = {},
): Promise<RetentionResult> {
  const named = (p: PointedVersions | undefined) => (p ? [p.version, ...(p.previous ? [p.previous] : [])] : []);
  const keep = [...new Set(named(req.after))];
  const expire = [...new Set(named(req.before))].filter((v) => !keep.includes(v));
  const result: RetentionResult = { kept: [], released: [], missing: [], failed: [] };
  const plan: [string, Retention][] = [...keep.map((v): [string, Retention] => [v, "keep"]), ...expire.map((v): [string, Retention] => [v, "expire"])];
  for (const [version, retention] of plan) {
    const key = artifactKey(req.app, version);
    try {
      if (!(await setRetention(s3, req.bucket, key, retention, pacing))) result.missing.push(key);
      else (retention === "keep" ? result.kept : result.released).push(key);
    } catch (err) {
      const error = describeError(err);
      result.failed.push({ key, error });
      pacing.log?.(`could not tag ${s3Uri(req.bucket, key)} ${TAG_RETENTION}=${retention} (${error}); release again to set it`);
    }
  }
  return result;
}
