/**
 * A built artifact into an environment's bucket: `zcp build` and a release that builds
 * (the default) both go through here. The upload is the immutable one of deploy/aws/artifacts:
 * the same bytes under a version again are reused, other bytes are refused.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { artifactKey } from "../../shared/naming.js";
import { s3Uri, uploadArtifact } from "../aws/artifacts.js";
import { createAwsClients, destroyAwsClients } from "../aws/clients.js";
import type { EnvironmentContext, SourceSpec } from "../environments.js";
import { buildArtifact, type BuildResult, type PythonTarget } from "./index.js";
import { timed } from "../timings.js";

export interface PublishRequest {
  version: string;
  source: SourceSpec;
  pythonTarget?: PythonTarget;
}

export interface PublishedArtifact {
  environment: string;
  version: string;
  bucket: string;
  key: string;
  uri: string;
  sha256: string;
  bytes: number;
  files: number;
  /** False when identical bytes were already there. */
  uploaded: boolean;
  lockDigest: string;
  commit?: string;
}

export function packageSpecOf(source: SourceSpec): SourceSpec {
  return source.kind === "dir" ? { kind: "dir", dir: source.dir } : { kind: "git", repoDir: source.repoDir, commit: source.commit, ...(source.subdir ? { subdir: source.subdir } : {}) };
}

/** Builds `req.version` and uploads it; returns what is in the bucket. */
export async function buildAndUpload(ctx: EnvironmentContext, req: PublishRequest, log: (m: string) => void): Promise<PublishedArtifact> {
  const built: BuildResult = await timed("runner: build", () => buildArtifact({
    version: req.version,
    source: packageSpecOf(req.source),
    ...(req.pythonTarget ? { pythonTarget: req.pythonTarget } : {}),
    log,
    cacheDir: path.join(ctx.workDir, "build-cache", "wheels"),
  }));
  const key = artifactKey(ctx.outputs.app, req.version);
  const clients = createAwsClients({ region: ctx.outputs.region });
  try {
    log(`built ${req.version}: ${built.files} files, ${(built.bytes / 1024).toFixed(0)} KiB, sha256 ${built.sha256.slice(0, 12)}…`);
    const up = await timed("runner: upload", () => uploadArtifact(clients.s3, {
      bucket: ctx.outputs.bucket,
      key,
      body: built.path,
      sha256: built.sha256,
      metadata: { ...(built.commit ? { commit: built.commit } : {}), createdAt: new Date().toISOString() },
    }));
    log(up.uploaded ? `uploaded ${s3Uri(ctx.outputs.bucket, key)}` : `reusing identical ${s3Uri(ctx.outputs.bucket, key)}`);
    return {
      environment: ctx.name,
      version: req.version,
      bucket: ctx.outputs.bucket,
      key,
      uri: s3Uri(ctx.outputs.bucket, key),
      sha256: built.sha256,
      bytes: built.bytes,
      files: built.files,
      uploaded: up.uploaded,
      lockDigest: built.manifest.lockDigest,
      ...(built.commit ? { commit: built.commit } : {}),
    };
  } finally {
    destroyAwsClients(clients);
    fs.rmSync(path.dirname(built.path), { recursive: true, force: true });
  }
}
