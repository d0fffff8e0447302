/**
 * `latest.json`: the release new instances converge to. It moves last, after every step of a
 * release succeeded, and only with a compare-and-swap on the ETag read before the release, so
 * two releases racing cannot silently overwrite each other.
 */
import { GetObjectCommand, PutObjectCommand, type PutObjectCommandInput, type S3Client } from "@aws-sdk/client-s3";
import { PointerRaceError, StepError } from "../../shared/errors.js";
import { latestPointerKey } from "../../shared/naming.js";
import { awsCall, awsErrorName, awsHttpStatus, type Pacing } from "./call.js";
import { isNotFound, s3Uri } from "./artifacts.js";

export interface LatestPointer {
  version: string;
  /** Artifact key of the version. */
  key: string;
  sha256: string;
  imageId?: string;
  launchTemplateVersion?: number;
  /** ISO-8601 time the release finished. */
  releasedAt: string;
  /** The version this one replaced. */
  previous?: string;
  /**
   * The release's place in the app's release order: the previous pointer's plus one (1 for
   * the first, or after a pointer written without one). Instances record it with the release
   * they run, and boot converge never moves them to a pointer with a lower one.
   */
  sequence?: number;
}

export interface PointerRead {
  pointer: LatestPointer;
  etag: string;
}

/** Checks the fields a reader relies on; anything else in the file is dropped. */
export function parseLatestPointer(text: string, where: string): LatestPointer {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new StepError("Reading latest pointer", where, new Error(`not valid JSON: ${(err as Error).message}`));
  }
  const o = (raw ?? {}) as Record<string, unknown>;
  const str = (k: string) => (typeof o[k] === "string" && o[k] !== "" ? (o[k] as string) : undefined);
  const version = str("version");
  const key = str("key");
  const sha256 = str("sha256");
  const releasedAt = str("releasedAt");
  if (!version || !key || !sha256 || !releasedAt) {
    throw new StepError("Reading latest pointer", where, new Error("missing one of version, key, sha256, releasedAt"));
  }
  const imageId = str("imageId");
  const previous = str("previous");
  const ltv = o.launchTemplateVersion;
  const seq = o.sequence;
  return {
    version,
    key,
    sha256,
    ...(imageId ? { imageId } : {}),
    ...(typeof ltv === "number" && Number.isInteger(ltv) ? { launchTemplateVersion: ltv } : {}),
    releasedAt,
    ...(previous ? { previous } : {}),
    ...(typeof seq === "number" && Number.isSafeInteger(seq) && seq > 0 ? { sequence: seq } : {}),
  };
}

/** The file's bytes: stable key order, one trailing newline, easy to read with `aws s3 cp … -`. */
export function serializeLatestPointer(p: LatestPointer): string {
  const ordered: LatestPointer = {
    version: p.version,
    key: p.key,
    sha256: p.sha256,
    ...(p.imageId !== undefined ? { imageId: p.imageId } : {}),
    ...(p.launchTemplateVersion !== undefined ? { launchTemplateVersion: p.launchTemplateVersion } : {}),
    releasedAt: p.releasedAt,
    ...(p.previous !== undefined ? { previous: p.previous } : {}),
    ...(p.sequence !== undefined ? { sequence: p.sequence } : {}),
  };
  return `${JSON.stringify(ordered, null, 2)}\n`;
}

/** The sequence of the release that replaces `current` (see LatestPointer.sequence). */
export function nextSequence(current: LatestPointer | undefined): number {
  return (current?.sequence ?? 0) + 1;
}

/** The pointer a release writes, recording what it replaced and the next sequence. */
export function nextLatestPointer(current: LatestPointer | undefined, release: Omit<LatestPointer, "previous" | "sequence">): LatestPointer {
  const previous = current && current.version !== release.version ? current.version : current?.previous;
  return { ...release, ...(previous ? { previous } : {}), sequence: nextSequence(current) };
}

export async function readLatestPointer(s3: S3Client, bucket: string, app: string, pacing: Pacing = {}): Promise<PointerRead | undefined> {
  const key = latestPointerKey(app);
  const where = s3Uri(bucket, key);
  let text: string;
  let etag: string | undefined;
  try {
    const out = await awsCall("Reading latest pointer", where, () => s3.send(new GetObjectCommand({ Bucket: bucket, Key: key })), pacing);
    text = (await out.Body?.transformToString("utf-8")) ?? "";
    etag = out.ETag;
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
  if (!etag) throw new StepError("Reading latest pointer", where, new Error("S3 returned no ETag"));
  return { pointer: parseLatestPointer(text, where), etag };
}

export function buildWriteLatestPointerInput(
  bucket: string,
  app: string,
  pointer: LatestPointer,
  expectedEtag: string | undefined,
): PutObjectCommandInput {
  return {
    Bucket: bucket,
    Key: latestPointerKey(app),
    Body: serializeLatestPointer(pointer),
    ContentType: "application/json",
    // Instances read it at boot; an intermediary must never serve a stale one.
    CacheControl: "no-cache",
    ...(expectedEtag !== undefined ? { IfMatch: expectedEtag } : { IfNoneMatch: "*" }),
  };
}

/**
 * Writes the pointer if it still is what the release read (`expectedEtag`), or if there was
 * none (`undefined`). Losing the race throws `PointerRaceError` naming what is there now.
 */
export async function writeLatestPointer(
  s3: S3Client,
  bucket: string,
  app: string,
  pointer: LatestPointer,
  expectedEtag: string | undefined,
  pacing: Pacing = {},
): Promise<{ etag: string }> {
  const input = buildWriteLatestPointerInput(bucket, app, pointer, expectedEtag);
  const where = s3Uri(bucket, input.Key ?? "");
  try {
    const out = await awsCall("Moving latest pointer", where, () => s3.send(new PutObjectCommand(input)), pacing);
    return { etag: out.ETag ?? "" };
  } catch (err) {
    const status = awsHttpStatus(err);
    const name = awsErrorName(err);
    const lost = name === "PreconditionFailed" || status === 412 || name === "ConditionalRequestConflict" || status === 409;
    // With IfMatch on a key that is gone, S3 answers 404: someone deleted the pointer meanwhile.
    const vanished = expectedEtag !== undefined && (name === "NoSuchKey" || status === 404);
    if (!lost && !vanished) throw err;
    // A retried PUT whose first attempt landed (its response lost) fails its own precondition:
    // if what is there now is byte for byte the pointer this release wrote, the write happened.
    if (lost) {
      const now = await readLatestPointer(s3, bucket, app, pacing).catch(() => undefined);
      if (now && serializeLatestPointer(now.pointer) === serializeLatestPointer(pointer)) return { etag: now.etag };
    }
    throw await raceError(s3, bucket, app, pointer, expectedEtag, where, pacing, err);
  }
}

async function raceError(
  s3: S3Client,
  bucket: string,
  app: string,
  pointer: LatestPointer,
  expectedEtag: string | undefined,
  where: string,
  pacing: Pacing,
  cause: unknown,
): Promise<PointerRaceError> {
  let now: string;
  try {
    const current = await readLatestPointer(s3, bucket, app, pacing);
    now = current
      ? `it now points to ${current.pointer.version} (released ${current.pointer.releasedAt}, ETag ${current.etag})`
      : "it no longer exists";
  } catch {
    now = "its current content could not be read";
  }
  const expected = expectedEtag === undefined ? "expected no pointer yet" : `expected ETag ${expectedEtag}`;
  return new PointerRaceError(
    `${where} moved while this release ran (${expected}); ${now}. ` +
      `Not overwriting it with ${pointer.version}: check which release should be latest and run it again.`,
    { cause },
  );
}
