/**
 * `zcp promote --from dev --to prod --version V`: the exact artifact dev released, copied into
 * prod's bucket, byte for byte; nothing is rebuilt.
 *
 * 1. The source object's sha256 is read from its metadata (what `zcp build` recorded).
 * 2. The bytes are downloaded to a temporary file and hashed on the way; a mismatch is refused.
 * 3. The target key is written once (deploy/aws/artifacts `uploadArtifact`): the same bytes
 *    already there are reused, different bytes under that version are refused (exit 2), and
 *    the conditional PutObject (`If-None-Match: *`) keeps two promotions from both writing.
 * 4. The target object is read back (HEAD with its checksum) and must carry the same sha256.
 *
 * Across accounts, the promoting session (prod's release role) reads the dev bucket through
 * two grants the foundations create, a statement in dev's bucket policy naming prod's release
 * role (`zcp:artifacts.promoteReaders`) and the matching identity permission on that role
 * (`zcp:artifacts.promoteFrom`), both `s3:GetObject` on the app's artifacts only: HEAD and GET
 * are all this reads from the source (docs/operations.md, "Promoting an artifact"; a
 * cross-account read needs both sides to allow it). Without list rights a missing version
 * reads as 403, so a 403 is reported as "missing or not readable", naming both settings.
 */
import { GetObjectCommand, type S3Client } from "@aws-sdk/client-s3";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as fsp from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import { pipeline } from "node:stream/promises";
import { Readable, Transform } from "node:stream";
import { ConfigError, StepError } from "../shared/errors.js";
import { artifactKey } from "../shared/naming.js";
import { ARTIFACT_METADATA, headArtifact, s3Uri, uploadArtifact } from "./aws/artifacts.js";
import { awsCall, awsHttpStatus } from "./aws/call.js";

/** One side of a promotion: where the environment keeps its artifacts. */
export interface ArtifactStore {
  environment: string;
  app: string;
  bucket: string;
  s3: S3Client;
}

export interface PromoteResult {
  version: string;
  from: { environment: string; uri: string };
  to: { environment: string; uri: string };
  sha256: string;
  bytes: number;
  /** False when the target already held these exact bytes. */
  copied: boolean;
}

export async function promoteArtifact(from: ArtifactStore, to: ArtifactStore, version: string, log: (m: string) => void = () => undefined): Promise<PromoteResult> {
  if (from.environment === to.environment) throw new ConfigError("--to", `must differ from --from (both are "${from.environment}")`);
  if (from.app !== to.app) {
    throw new ConfigError("--to", `environment "${to.environment}" deploys app "${to.app}", but "${from.environment}" deploys "${from.app}"; only the same app can be promoted`);
  }
  const key = artifactKey(from.app, version);
  const source = s3Uri(from.bucket, key);
  const target = s3Uri(to.bucket, key);

  const head = await headArtifact(from.s3, from.bucket, key).catch((err: unknown) => {
    if (awsHttpStatus(err) !== 403) throw err;
    throw new ConfigError(
      "--version",
      `${source} is missing or this session may not read it (403): check that ${from.environment} built ${version}, that its ` +
        `zcp:artifacts.promoteReaders names this role and that ${to.environment}'s zcp:artifacts.promoteFrom names ${from.bucket}; nothing was copied`,
      { cause: err },
    );
  });
  if (!head) throw new ConfigError("--version", `no artifact for version ${version} in ${from.environment} (${source}); build or release it there first`);
  if (!head.sha256) throw new ConfigError("--version", `${source} has no recorded sha256; only artifacts zcp built can be promoted`);
  const sha256 = head.sha256;

  // Refused before any byte moves: the target's version is taken by other bytes.
  const existing = await headArtifact(to.s3, to.bucket, key);
  if (existing && existing.sha256 !== sha256) {
    throw new ConfigError(
      "--version",
      `${target} already holds ${existing.sha256 ? `sha256 ${existing.sha256}` : "an object with no recorded sha256"}, not the ${sha256} of ${source}; versions are immutable, nothing was copied`,
    );
  }
  if (existing) {
    log(`${target} already holds sha256 ${sha256.slice(0, 12)}…; nothing to copy`);
    return { version, from: { environment: from.environment, uri: source }, to: { environment: to.environment, uri: target }, sha256, bytes: existing.size, copied: false };
  }

  const work = await fsp.mkdtemp(path.join(os.tmpdir(), "zcp-promote-"));
  try {
    const file = path.join(work, `${sha256}.tar.gz`);
    const got = await download(from.s3, from.bucket, key, file);
    if (got.sha256 !== sha256) {
      throw new StepError("Promotion download of", source, new Error(`the bytes have sha256 ${got.sha256}, not the ${sha256} recorded for them; nothing was copied`));
    }
    log(`downloaded ${source} (${(got.bytes / 1024).toFixed(0)} KiB), sha256 verified`);
    const commit = head.metadata[ARTIFACT_METADATA.commit];
    const createdAt = head.metadata[ARTIFACT_METADATA.createdAt] ?? new Date().toISOString();
    const up = await uploadArtifact(to.s3, { bucket: to.bucket, key, body: file, sha256, metadata: { ...(commit ? { commit } : {}), createdAt } });
    const after = await headArtifact(to.s3, to.bucket, key);
    if (after?.sha256 !== sha256) {
      throw new StepError("Promotion check of", target, new Error(`reads back with sha256 ${after?.sha256 ?? "none"}, expected ${sha256}`));
    }
    log(up.uploaded ? `copied to ${target}` : `${target} already held the same bytes`);
    return { version, from: { environment: from.environment, uri: source }, to: { environment: to.environment, uri: target }, sha256, bytes: got.bytes, copied: up.uploaded };
  } finally {
    await fsp.rm(work, { recursive: true, force: true });
  }
}

async function download(s3: S3Client, bucket: string, key: string, file: string): Promise<{ sha256: string; bytes: number }> {
  const out = await awsCall("Promotion download of", s3Uri(bucket, key), () => s3.send(new GetObjectCommand({ Bucket: bucket, Key: key })));
  if (!out.Body) throw new StepError("Promotion download of", s3Uri(bucket, key), new Error("empty response body"));
  const hash = createHash("sha256");
  let bytes = 0;
  const tee = new Transform({
    transform(chunk: Buffer, _enc, done) {
      hash.update(chunk);
      bytes += chunk.length;
      done(null, chunk);
    },
  });
  const body = out.Body as unknown as Readable | AsyncIterable<Uint8Array>;
  await pipeline(body instanceof Readable ? body : Readable.from(body), tee, fs.createWriteStream(file, { flags: "wx" }));
  return { sha256: hash.digest("hex"), bytes };
}

export function formatPromote(r: PromoteResult): string {
  return [
    `${r.version}: ${r.copied ? "promoted" : "already promoted"} from ${r.from.environment} to ${r.to.environment}`,
    `  from    ${r.from.uri}`,
    `  to      ${r.to.uri}`,
    `  sha256  ${r.sha256}`,
  ].join("\n");
}
