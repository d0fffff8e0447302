/**
 * Builds release artifacts of examples/app the way a packaging step does: a copy of the
 * app in a temporary staging directory, a VERSION file, then a tar.gz written outside the
 * staging directory (tar must never archive the directory it writes into).
 *
 *   const rel = buildRelease(outDir, { version: "1.0.0" });              // healthy
 *   const bad = buildRelease(outDir, { version: "2.0.0", broken: true }); // fails /health
 *   const dep = buildRelease(outDir, { version: "3.0.0", dependencyVersion: "1.1.0" });
 */
import { execFileSync } from "node:child_process";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { exampleAppDir } from "../../deploy/local/fleet.js";

export interface ReleaseOptions {
  version: string;
  /** Ship a BROKEN marker: the app starts but answers 503 on /health. @default false */
  broken?: boolean;
  /** Version of the vendored dependency the lockfile pins. @default "1.0.0" (the committed wheel) */
  dependencyVersion?: string;
  /** Extra files (relative path -> content) added to the release root. */
  extraFiles?: Record<string, string>;
  /** Artifact file name. @default `${version}.tar.gz` */
  fileName?: string;
  /** Called with the staging directory before it is archived (special files, modes). */
  prepare?: (staging: string) => void;
}

export interface BuiltRelease {
  version: string;
  /** Absolute path of the tar.gz. */
  path: string;
  sha256: string;
}

export const DEFAULT_DEPENDENCY_VERSION = "1.0.0";

export function sha256File(file: string): string {
  return crypto.createHash("sha256").update(fs.readFileSync(file)).digest("hex");
}

function copyApp(dest: string): void {
  fs.cpSync(exampleAppDir(), dest, {
    recursive: true,
    filter: (src) => !/(^|\/)(__pycache__|\.venv|node_modules)(\/|$)/.test(src),
  });
}

/** Builds one release tar.gz of the example app into `outDir`. */
export function buildRelease(outDir: string, opts: ReleaseOptions): BuiltRelease {
  const staging = fs.mkdtempSync(path.join(os.tmpdir(), "zcp-release-"));
  try {
    copyApp(staging);
    fs.writeFileSync(path.join(staging, "VERSION"), `${opts.version}\n`);
    if (opts.broken) fs.writeFileSync(path.join(staging, "BROKEN"), "this release fails its health check\n");
    const dep = opts.dependencyVersion ?? DEFAULT_DEPENDENCY_VERSION;
    if (dep !== DEFAULT_DEPENDENCY_VERSION) {
      execFileSync("python3", [path.join(staging, "tools", "make_wheel.py"), dep, path.join(staging, "vendor")], {
        stdio: "ignore",
      });
      const reqFile = path.join(staging, "requirements.txt");
      const wheel = path.join(staging, "vendor", `zcp_example_dep-${dep}-py3-none-any.whl`);
      const req = fs
        .readFileSync(reqFile, "utf8")
        .replace(/^zcp-example-dep==.*$/m, `zcp-example-dep==${dep} --hash=sha256:${sha256File(wheel)}`);
      fs.writeFileSync(reqFile, req);
    }
    for (const [rel, content] of Object.entries(opts.extraFiles ?? {})) {
      fs.mkdirSync(path.dirname(path.join(staging, rel)), { recursive: true });
      fs.writeFileSync(path.join(staging, rel), content);
    }
    opts.prepare?.(staging);
    fs.mkdirSync(outDir, { recursive: true });
    const artifact = path.join(outDir, opts.fileName ?? `${opts.version}.tar.gz`);
    // Owner and group 0 in the archive, like a CI build: the agent must not keep them.
    execFileSync("tar", ["-czf", artifact, "--owner=0", "--group=0", "-C", staging, "."], { stdio: "ignore" });
    // The artifact is read by the agent, possibly as another user.
    fs.chmodSync(artifact, 0o644);
    return { version: opts.version, path: artifact, sha256: sha256File(artifact) };
  } finally {
    fs.rmSync(staging, { recursive: true, force: true });
  }
}
