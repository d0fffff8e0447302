/**
 * `zcp build`: a hermetic artifact. The app and every dependency it installs are resolved once,
 * here, and packaged into one deterministic `.tar.gz` that instances install offline:
 *
 *   .zcp/wheels/*.whl                      Python: the wheels pip downloaded for requirements.txt,
 *                                          hash-checked (`--require-hashes`), binary only
 *   .zcp/npm-cache/_cacache/content-v2/…   Node: the tarballs of package-lock.json, stored the way
 *                                          npm's cache (cacache) stores content, by integrity, so
 *                                          `npm ci --offline --cache .zcp/npm-cache` installs them
 *   .zcp/manifest.json                     last entry: every file's sha256, the lockfiles' digest,
 *                                          the builder's versions
 *
 * Only content-addressed files are shipped (no cache index, no timestamps), so the archive's
 * sha256 stays a function of the source and the lockfiles. A lockfile without hashes is refused
 * before anything is downloaded (see lockfiles.ts).
 */
import { execFile, type ExecFileOptions } from "node:child_process";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as fsp from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import { ConfigError, StepError, describeError } from "../../shared/errors.js";
import { packageSource, type FileDigest, type PackageResult, type PackageSourceSpec } from "../package/index.js";
import { findRepoRoot } from "../repo.js";
import { checkPackageLock, checkRequirements, type NodeLock, type PythonLock } from "./lockfiles.js";
import { mark, timed } from "../timings.js";
import { restoreWheels, storeWheels, wheelCacheKey } from "./wheel-cache.js";

/** Where the build's own files live in the archive; the source may not use it. */
export const BUILD_DIR = ".zcp";
export const MANIFEST_PATH = `${BUILD_DIR}/manifest.json`;
export const MANIFEST_FORMAT = "zcp-artifact/1";

/** The platform wheels are downloaded for, when it is not the builder's own. */
export interface PythonTarget {
  /** A wheel platform tag, e.g. `manylinux2014_x86_64` (pip download --platform). */
  platform?: string;
  /** `3.12` (pip download --python-version). */
  pythonVersion?: string;
}

export interface BuildOptions {
  version: string;
  source: PackageSourceSpec;
  /**
   * Target of the Python wheels.
   * @default the builder's interpreter and platform
   */
  pythonTarget?: PythonTarget;
  /**
   * Where the artifact is written.
   * @default a new temporary directory, which the caller removes
   */
  outDir?: string;
  /** @default silent */
  log?: (message: string) => void;
  /**
   * Where the wheels of a requirements.txt are kept between builds (build/wheel-cache.ts);
   * a reused wheel is checked against the lockfile's hashes again.
   * @default none: pip resolves every build
   */
  cacheDir?: string;
}

export interface ArtifactManifest {
  format: typeof MANIFEST_FORMAT;
  version: string;
  source: { kind: "dir" } | { kind: "git"; commit: string };
  /** sha256 of each lockfile the build resolved. */
  lockfiles: Record<string, string>;
  /** One digest over the lockfiles (name and sha256 of each, in name order): "same dependencies". */
  lockDigest: string;
  dependencies: {
    python?: { wheels: { file: string; sha256: string }[]; target: PythonTarget };
    node?: { packages: number };
  };
  builder: Record<string, string>;
  files: { path: string; sha256: string; size: number; mode: string; symlink?: true }[];
}

export interface BuildResult extends PackageResult {
  manifest: ArtifactManifest;
}

const TAG_RE = /^[A-Za-z0-9_.]{1,64}$/;
const PY_VERSION_RE = /^3(\.[0-9]{1,2}){0,2}$/;

export function validatePythonTarget(target: PythonTarget): void {
  if (target.platform !== undefined && !TAG_RE.test(target.platform)) {
    throw new ConfigError("--python-platform", `must be a wheel platform tag such as manylinux2014_x86_64, got ${JSON.stringify(target.platform)}`);
  }
  if (target.pythonVersion !== undefined && !PY_VERSION_RE.test(target.pythonVersion)) {
    throw new ConfigError("--python-version", `must be a Python 3 version such as 3.12, got ${JSON.stringify(target.pythonVersion)}`);
  }
}

/** Builds the artifact of one version; nothing is uploaded. */
export async function buildArtifact(opts: BuildOptions): Promise<BuildResult> {
  const log = opts.log ?? (() => undefined);
  const target = opts.pythonTarget ?? {};
  validatePythonTarget(target);
  const work = await fsp.mkdtemp(path.join(os.tmpdir(), "zcp-build-"));
  try {
    if (opts.source.kind === "dir") await assertDirectory(opts.source.dir);
    const requirementsText = await readSourceFile(opts.source, "requirements.txt");
    const lockText = await readSourceFile(opts.source, "package-lock.json");
    // Checked before anything is downloaded: a refused lockfile costs nothing.
    const python = requirementsText !== undefined ? checkRequirements(requirementsText) : undefined;
    const node = lockText !== undefined ? checkPackageLock(lockText, await readSourceFile(opts.source, "package.json")) : undefined;
    if (node === undefined && (await readSourceFile(opts.source, "package.json")) !== undefined) {
      log("package.json without package-lock.json: no Node dependencies are installed");
    }

    mark("build: lockfiles read and checked");
    const deps = path.join(work, "deps");
    await fsp.mkdir(deps);
    const builder: Record<string, string> = { zcp: zcpVersion(), node: process.version, zlib: process.versions.zlib ?? "" };
    const dependencies: ArtifactManifest["dependencies"] = {};
    if (python) {
      const dir = opts.source.kind === "dir" ? path.resolve(opts.source.dir) : await materialize(opts.source, path.join(work, "source"));
      const wheels = await timed("build: python dependencies", () => downloadWheels(python, dir, path.join(deps, "wheels"), target, builder, opts.cacheDir));
      dependencies.python = { wheels, target };
      log(`python dependencies: ${python.requirements.length} pinned, ${wheels.length} wheels`);
    }
    if (node) {
      const count = await timed("build: node dependencies", () => collectNpmTarballs(node, path.join(work, "npm"), path.join(deps, "npm-cache"), builder));
      dependencies.node = { packages: count };
      log(`node dependencies: ${count} packages`);
    }

    const lockfiles: Record<string, string> = {};
    if (python) lockfiles[python.file] = sha256(python.text);
    if (node) lockfiles[node.file] = sha256(node.text);
    const lockDigest = sha256(
      Object.keys(lockfiles)
        .sort()
        .map((name) => `${name}\0${lockfiles[name]}\n`)
        .join(""),
    );

    const commit = opts.source.kind === "git" ? await resolveCommit(opts.source) : undefined;
    let rendered: ArtifactManifest | undefined;
    const render = (digests: readonly FileDigest[]): string => {
      rendered = {
        format: MANIFEST_FORMAT,
        version: opts.version,
        source: commit !== undefined ? { kind: "git", commit } : { kind: "dir" },
        lockfiles,
        lockDigest,
        dependencies,
        builder,
        files: digests.map((d) => ({
          path: d.path,
          sha256: d.sha256,
          size: d.size,
          mode: d.mode.toString(8).padStart(4, "0"),
          ...(d.kind === "symlink" ? { symlink: true as const } : {}),
        })),
      };
      return `${JSON.stringify(rendered, null, 1)}\n`;
    };
    const pkg = await timed("build: package and manifest", () => packageSource({
      source: opts.source,
      ...(opts.outDir !== undefined ? { outDir: opts.outDir } : {}),
      extraFiles: { VERSION: `${opts.version}\n` },
      reservedTree: { root: BUILD_DIR, dir: deps },
      manifest: { path: MANIFEST_PATH, render },
    }));
    if (!rendered) throw new Error("the manifest was not written");
    return { ...pkg, manifest: rendered };
  } finally {
    await fsp.rm(work, { recursive: true, force: true });
  }
}

function sha256(data: string | Buffer): string {
  return createHash("sha256").update(data).digest("hex");
}

function zcpVersion(): string {
  try {
    return (JSON.parse(fs.readFileSync(path.join(findRepoRoot(), "package.json"), "utf8")) as { version?: string }).version ?? "unknown";
  } catch {
    return "unknown";
  }
}

// ---------------------------------------------------------------- source files

const GIT_ENV = (): NodeJS.ProcessEnv => {
  const env: NodeJS.ProcessEnv = { ...process.env, GIT_TERMINAL_PROMPT: "0", LC_ALL: "C" };
  for (const name of ["GIT_DIR", "GIT_WORK_TREE", "GIT_COMMON_DIR", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY"]) delete env[name];
  return env;
};

/** The same refusals as the packager's, before a lockfile is looked for in a source that is not a directory. */
async function assertDirectory(dir: string): Promise<void> {
  let st: fs.Stats;
  try {
    st = await fsp.stat(path.resolve(dir));
  } catch (err) {
    throw new ConfigError("--source", `cannot read "${dir}": ${describeError(err)}`, { cause: err });
  }
  if (!st.isDirectory()) throw new ConfigError("--source", `"${dir}" is not a directory`);
}

/** A top-level file of the source as text, or undefined when it has none. */
async function readSourceFile(source: PackageSourceSpec, name: string): Promise<string | undefined> {
  if (source.kind === "dir") {
    const file = path.join(path.resolve(source.dir), name);
    try {
      if (!(await fsp.lstat(file)).isFile()) throw new ConfigError(name, "must be a regular file");
      return await fsp.readFile(file, "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      if (err instanceof ConfigError) throw err;
      throw new ConfigError(name, `cannot read: ${describeError(err)}`, { cause: err });
    }
  }
  const rel = source.subdir ? `${source.subdir.replace(/\/+$/, "")}/${name}` : name;
  const out = await run("git", ["-C", path.resolve(source.repoDir), "cat-file", "blob", `${source.commit}:${rel}`], { env: GIT_ENV() }).catch(() => undefined);
  return out?.stdout;
}

async function resolveCommit(source: Extract<PackageSourceSpec, { kind: "git" }>): Promise<string> {
  const out = await run("git", ["-C", path.resolve(source.repoDir), "rev-parse", "--verify", "--quiet", `${source.commit}^{commit}`], { env: GIT_ENV() });
  return out.stdout.trim();
}

/** The packaged files of a git source on disk (pip reads relative --find-links from there). */
async function materialize(source: PackageSourceSpec, into: string): Promise<string> {
  const pkg = await packageSource({ source, outDir: path.join(into, "..", "materialize") });
  await fsp.mkdir(into, { recursive: true });
  await run("tar", ["-xzf", pkg.path, "-C", into]);
  return into;
}

// ---------------------------------------------------------------- Python

async function downloadWheels(
  lock: PythonLock,
  sourceDir: string,
  dest: string,
  target: PythonTarget,
  builder: Record<string, string>,
  cacheDir: string | undefined,
): Promise<{ file: string; sha256: string }[]> {
  const python = process.env.ZCP_BUILD_PYTHON ?? "python3";
  // Both versions from one short interpreter run: `pip --version` would start pip's whole
  // command line (about a second on a busy machine) to print the same `pip.__version__`.
  const versions = await timed("build: python and pip versions", () =>
    run(python, ["-c", "import sys, sysconfig, pip; print(sys.version.split()[0]); print(pip.__version__); print(sysconfig.get_platform()); print(sys.implementation.cache_tag)"]),
  ).catch((err: unknown) => {
    throw new ConfigError("requirements.txt", `needs python3 with pip on the build machine: ${describeError(err)}`, { cause: err });
  });
  const [pythonVersion = "", pipVersion = "", platform = "", implementation = ""] = versions.stdout.trim().split("\n").map((l) => l.trim());
  builder.python = pythonVersion;
  builder.pip = pipVersion;
  const cacheKey = cacheDir
    ? await wheelCacheKey({ lockText: lock.text, builder: { python: pythonVersion, pip: pipVersion, platform, implementation, executable: python }, target, sourceDir })
    : undefined;
  if (cacheDir && cacheKey) {
    const cached = await timed("build: wheels from the cache", () => restoreWheels(cacheDir, cacheKey, lock.text, dest));
    if (cached) return cached;
  }
  await fsp.mkdir(dest, { recursive: true });
  const args = [
    "-m", "pip", "download",
    "--quiet", "--disable-pip-version-check", "--no-input",
    // pip docs, "Secure installs": every requirement must carry a hash and be pinned.
    "--require-hashes",
    // Binary only: an sdist would run its build on the instance, with whatever is there.
    "--only-binary=:all:",
    "--dest", dest,
    "-r", "requirements.txt",
    ...(target.platform ? ["--platform", target.platform] : []),
    ...(target.pythonVersion ? ["--python-version", target.pythonVersion] : []),
  ];
  try {
    await timed("build: pip download", () => run(python, args, { cwd: sourceDir }));
  } catch (err) {
    throw new StepError("Downloading the Python dependencies of", "requirements.txt", err);
  }
  const wheels: { file: string; sha256: string }[] = [];
  for (const file of (await fsp.readdir(dest)).sort()) {
    wheels.push({ file, sha256: sha256(await fsp.readFile(path.join(dest, file))) });
  }
  if (cacheDir && cacheKey) await storeWheels(cacheDir, cacheKey, lock.text, dest, wheels);
  return wheels;
}

// ---------------------------------------------------------------- Node

/**
 * Runs `npm ci` once on the builder (through its own npm cache and configuration, so a
 * registry mirror or an offline cache of the build machine is used), then copies the tarball
 * of every locked package out of that cache into `dest`, laid out as cacache lays out content:
 * `_cacache/content-v2/<algorithm>/<hex[0..2]>/<hex[2..4]>/<hex[4..]>` (npm/cacache,
 * lib/content/path.js). npm looks a locked package up by its integrity there, so the instance
 * needs neither the network nor the cache's index.
 */
async function collectNpmTarballs(lock: NodeLock, work: string, dest: string, builder: Record<string, string>): Promise<number> {
  builder.npm = (await run("npm", ["--version"]).catch((err: unknown) => {
    throw new ConfigError("package-lock.json", `needs npm on the build machine: ${describeError(err)}`, { cause: err });
  })).stdout.trim();
  if (lock.packages.length === 0) return 0;
  await fsp.mkdir(work, { recursive: true });
  await fsp.writeFile(path.join(work, "package.json"), lock.packageJson);
  await fsp.writeFile(path.join(work, "package-lock.json"), lock.text);
  try {
    await run("npm", ["ci", "--omit=dev", "--ignore-scripts", "--prefer-offline", "--no-audit", "--no-fund", "--loglevel=error"], { cwd: work });
  } catch (err) {
    throw new StepError("Downloading the Node dependencies of", "package-lock.json", err);
  }
  const cache = (await run("npm", ["config", "get", "cache"], { cwd: work })).stdout.trim();
  let copied = 0;
  for (const pkg of lock.packages) {
    const rel = cacachePath(pkg.integrity);
    const from = path.join(cache, "_cacache", rel);
    if (!fs.existsSync(from)) {
      // npm ci skips optional packages of other platforms; those have no tarball to ship.
      if (pkg.optional) continue;
      throw new ConfigError(`package-lock.json: "${pkg.path}"`, `npm ci did not leave its tarball (${pkg.integrity.slice(0, 20)}…) in the npm cache ${cache}`);
    }
    const to = path.join(dest, "_cacache", rel);
    await fsp.mkdir(path.dirname(to), { recursive: true });
    await fsp.copyFile(from, to);
    copied++;
  }
  return copied;
}

/** cacache's content path of an SRI integrity: the strongest hash, hex, split 2/2/rest. */
export function cacachePath(integrity: string): string {
  const hashes = integrity.split(/\s+/).map((h) => /^(sha(?:256|384|512))-([A-Za-z0-9+/=]+)$/.exec(h)).filter((m): m is RegExpExecArray => m !== null);
  const strength = (algo: string): number => ["sha256", "sha384", "sha512"].indexOf(algo);
  const best = hashes.sort((a, b) => strength(b[1] ?? "") - strength(a[1] ?? ""))[0];
  if (!best?.[1] || !best[2]) throw new ConfigError("package-lock.json", `unreadable integrity ${JSON.stringify(integrity)}`);
  const hex = Buffer.from(best[2], "base64").toString("hex");
  return path.join("content-v2", best[1], hex.slice(0, 2), hex.slice(2, 4), hex.slice(4));
}

// ---------------------------------------------------------------- processes

function run(cmd: string, args: string[], opts: ExecFileOptions = {}): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { maxBuffer: 64 << 20, encoding: "utf8", ...opts }, (err, stdout, stderr) => {
      if (err) {
        const detail = String(stderr).trim().split("\n").slice(-5).join("\n");
        reject(new Error(`${cmd} ${args.slice(0, 3).join(" ")} failed: ${detail || err.message}`, { cause: err }));
      } else resolve({ stdout: String(stdout), stderr: String(stderr) });
    });
  });
}
