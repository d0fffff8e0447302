/**
 * Deterministic release packaging: one source tree in, one `.tar.gz` out, whose sha256 depends
 * only on the tree (paths, contents, the executable bit and symlink targets), never on the
 * machine that built it: not on mtimes, owners, umask, readdir order or locale.
 *
 * The archive is:
 * - ustar, entries in byte order of their UTF-8 path, directories emitted explicitly before
 *   their contents (a parent path is a prefix of its children, so byte order puts it first);
 * - every entry owned by 0/0 with empty user and group names (`tar -tv` shows `0/0`), dated
 *   {@link PACKAGE_MTIME} (2000-01-01T00:00:00Z: a fixed date that no tool treats as "unset",
 *   unlike 0);
 * - modes normalised: 0755 for directories and for files whose owner-execute bit is set (the
 *   bit git records), 0644 for other files, 0777 for symlinks;
 * - paths longer than 100 bytes split into the ustar prefix when they can be, otherwise carried
 *   in a PAX extended header (as are link targets over 100 bytes and sizes of 8 GiB and more);
 * - closed by two zero blocks and padded to a whole 10 KiB record, as tar itself writes.
 *
 * What goes in:
 * - a directory source: every regular file and symlink under it, except anything named `.git`
 *   or `node_modules` at any depth (the agent installs dependencies on the instance); any other
 *   kind of file (socket, fifo, device) is refused;
 * - a git source: the blobs of the commit's tree, byte for byte as committed (no clean/smudge
 *   filters, no `export-ignore`); a submodule appears as an empty directory, as with
 *   `git archive`;
 * - directories only as parents of what is packaged: an empty directory is left out, which a
 *   git source could not carry anyway, so both sources of one tree give the same archive;
 * - symlinks as symlinks, never followed; one whose target is absolute or resolves outside the
 *   tree is refused, since it would reach into the instance beyond the release directory.
 *
 * The tar stream is cut into fixed 1 MiB blocks and compressed at level 6 (gzip's default),
 * block by block on several threads (see {@link BlockGzip}); the bytes depend only on the
 * block boundaries, never on the thread count. The gzip header is written here, fixed: no
 * file name, mtime 0, OS byte 3 (Unix). What is not pinned is the deflate implementation:
 * builds of Node with a different zlib (`process.versions.zlib`) may compress the same tar
 * differently, so "same sha256 on any machine" holds for the same Node release; the tar
 * stream inside is identical regardless.
 *
 * Nothing is held in memory whole: files stream through the tar writer into gzip into the
 * output file, and the sha256 is computed on the way. The output is written outside the
 * source (the pitfall of archiving into the tree being archived: "file changed as we read it")
 * under a temporary name, and renamed to `<sha256>.tar.gz` once complete.
 */
import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { createHash, randomBytes, type Hash } from "node:crypto";
import * as fs from "node:fs";
import { constants as fsConstants } from "node:fs";
import * as fsp from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import { PassThrough } from "node:stream";
import { constants, crc32, deflateRaw } from "node:zlib";
import { ConfigError, StepError, describeError } from "../shared/errors.js";

/** Modification time of every entry: 2000-01-01T00:00:00Z, in seconds since the epoch. */
export const PACKAGE_MTIME = 946_684_800;
/** gzip level; 6 is gzip's own default, the usual size/speed balance. */
export const PACKAGE_GZIP_LEVEL = 6;
/** Directories never packaged from a directory source, at any depth. */
export const SKIPPED_NAMES: ReadonlySet<string> = new Set([".git", "node_modules"]);

export type PackageSourceSpec =
  /** Every regular file and symlink under `dir`, except `.git` and `node_modules`. */
  | { kind: "dir"; dir: string }
  /**
   * The files of `commit` as committed, read from the object store, not the work tree; with
   * `subdir`, only that directory of the commit, as the archive's root (an app that lives in a
   * subdirectory of its repository, whose VERSION belongs beside its code).
   */
  | { kind: "git"; repoDir: string; commit: string; subdir?: string };

export interface PackageOptions {
  source: PackageSourceSpec;
  /**
   * Where the archive is written; must lie outside a directory source.
   * @default a new directory from `mkdtemp` under `os.tmpdir()`, which the caller removes
   */
  outDir?: string;
  /**
   * Files added to the archive as `path → UTF-8 content`, mode 0644, e.g. `{ VERSION: "v1\n" }`.
   * One replaces a source file of the same path; clashing with a directory or symlink is an
   * error.
   * @default none
   */
  extraFiles?: Record<string, string>;
  /**
   * Blocks compressed in parallel. Changes speed only: the archive is the same for any value.
   * @default min(os.availableParallelism(), 3)
   */
  concurrency?: number;
}

export interface PackageResult {
  /** Absolute path of the archive, named `<sha256>.tar.gz`. */
  path: string;
  /** Lower-case hex sha256 of the archive. */
  sha256: string;
  /** Size of the archive in bytes. */
  bytes: number;
  /** Regular files and symlinks in the archive (directories not counted). */
  files: number;
  /** Full id of the packaged commit (git sources only). */
  commit?: string;
}

/** Packages a source tree into a deterministic `.tar.gz`; see the module comment. */
export async function packageSource(opts: PackageOptions): Promise<PackageResult> {
  const concurrency = opts.concurrency ?? defaultConcurrency();
  if (!Number.isInteger(concurrency) || concurrency < 1) {
    throw new ConfigError("concurrency", `must be a whole number of at least 1, got ${concurrency}`);
  }
  const source = await readSource(opts.source);
  try {
    const entries = assembleEntries(source, opts.extraFiles ?? {});
    const outDir = await prepareOutDir(opts.outDir, source.root);
    const written = await writeArchive(entries, source.content, outDir, concurrency);
    return {
      ...written,
      files: entries.filter((e) => e.kind !== "dir").length,
      ...(source.commit !== undefined ? { commit: source.commit } : {}),
    };
  } finally {
    source.content.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Entries

type Entry =
  | { kind: "dir"; path: string }
  | { kind: "symlink"; path: string; target: string }
  | { kind: "file"; path: string; size: number; executable: boolean; origin: FileOrigin };

type FileEntry = Extract<Entry, { kind: "file" }>;

/** Where a file's bytes come from: the source (by its reader) or inline (an extra file). */
type FileOrigin = { from: "source"; ref: string } | { from: "inline"; data: Buffer };

/** Reads file contents, in the order the archive asks for them. */
interface ContentReader {
  /** Starts reading ahead: the files that will be asked for, in order. */
  plan(files: readonly FileEntry[]): void;
  /** The bytes of the next planned file, in chunks summing to exactly its size. */
  read(file: FileEntry, ref: string): AsyncIterable<Buffer>;
  close(): void;
}

interface Source {
  entries: Entry[];
  content: ContentReader;
  /** The field named in errors about this source. */
  field: string;
  /** Real path of a directory source, which the output must stay out of. */
  root?: string;
  commit?: string;
}

function readSource(spec: PackageSourceSpec): Promise<Source> {
  return spec.kind === "dir" ? readDirectorySource(spec.dir) : readGitSource(spec.repoDir, spec.commit, spec.subdir);
}

/** Adds the directories, merges the extra files in, sorts, and checks every symlink. */
function assembleEntries(source: Source, extraFiles: Record<string, string>): Entry[] {
  const byPath = new Map<string, Entry>();
  for (const entry of source.entries) byPath.set(entry.path, entry);
  // Directories are derived from the paths they hold, so a directory source and a git source of
  // the same tree give the same archive (git cannot record an empty directory).
  for (const entry of source.entries) addParents(byPath, entry.path, source.field);

  for (const [name, text] of Object.entries(extraFiles)) {
    const field = `extraFiles[${JSON.stringify(name)}]`;
    if (!isCleanRelativePath(name)) {
      throw new ConfigError(field, "must be a relative path without '.', '..' or empty segments");
    }
    const existing = byPath.get(name);
    if (existing && existing.kind !== "file") {
      throw new ConfigError(field, `clashes with the ${describeKind(existing)} of the same path in the source`);
    }
    const data = Buffer.from(text, "utf8");
    byPath.set(name, { kind: "file", path: name, size: data.length, executable: false, origin: { from: "inline", data } });
    addParents(byPath, name, field);
  }

  const links = new Map<string, string>();
  for (const entry of byPath.values()) if (entry.kind === "symlink") links.set(entry.path, entry.target);
  for (const [linkPath, target] of links) {
    const problem = symlinkProblem(linkPath, links);
    if (problem) {
      throw new ConfigError(
        source.field,
        `symlink "${linkPath}" -> "${target}" ${problem}; only relative targets that stay inside the tree are packaged`,
      );
    }
  }

  const keyed = [...byPath.values()].map((entry) => ({ entry, key: Buffer.from(entry.path, "utf8") }));
  keyed.sort((a, b) => Buffer.compare(a.key, b.key));
  return keyed.map((k) => k.entry);
}

function addParents(byPath: Map<string, Entry>, entryPath: string, field: string): void {
  for (let slash = entryPath.lastIndexOf("/"); slash > 0; slash = entryPath.lastIndexOf("/", slash - 1)) {
    const dir = entryPath.slice(0, slash);
    const existing = byPath.get(dir);
    if (existing?.kind === "dir") return;
    if (existing) throw new ConfigError(field, `"${dir}" is a ${describeKind(existing)} but "${entryPath}" is inside it`);
    byPath.set(dir, { kind: "dir", path: dir });
  }
}

function describeKind(entry: Entry): string {
  return entry.kind === "dir" ? "directory" : entry.kind === "symlink" ? "symlink" : "file";
}

function isCleanRelativePath(p: string): boolean {
  if (p.length === 0 || p.includes("\0") || p.includes("\\")) return false;
  return p.split("/").every((segment) => segment !== "" && segment !== "." && segment !== "..");
}

/** Most symlinks a path may pass through, as the Linux kernel allows (ELOOP). */
const MAX_SYMLINK_HOPS = 40;

/**
 * Why the symlink at `linkPath` is unsafe to ship, or undefined when it is safe. Resolves the
 * target the way the kernel would on the extracted tree, component by component, following the
 * archive's own symlinks on the way, so `a/b/s -> ../..` plus `a/b/t -> s/..` is caught even
 * though each target looks harmless on its own. Components that are not in the archive resolve
 * lexically: they cannot redirect anything.
 */
function symlinkProblem(linkPath: string, links: ReadonlyMap<string, string>): string | undefined {
  const target = links.get(linkPath) ?? "";
  if (target === "") return "has an empty target";
  if (target.includes("\0")) return "has a NUL byte in its target";
  if (target.startsWith("/")) return "is absolute";
  const dir = linkPath.split("/").slice(0, -1);
  let pending = target.split("/");
  let hops = 0;
  for (let part = pending.shift(); part !== undefined; part = pending.shift()) {
    if (part === "" || part === ".") continue;
    if (part === "..") {
      if (dir.length === 0) return "points outside the tree";
      dir.pop();
      continue;
    }
    const next = [...dir, part].join("/");
    const via = links.get(next);
    if (via === undefined) {
      dir.push(part);
      continue;
    }
    if (++hops > MAX_SYMLINK_HOPS) return "is part of a symlink loop";
    if (via.startsWith("/")) return `resolves through the absolute symlink "${next}"`;
    pending = [...via.split("/"), ...pending];
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Directory source

/** Bound on concurrent filesystem calls while walking the tree. */
const FS_CONCURRENCY = 32;
/** Files up to this size are read whole, ahead of need; larger ones are streamed. */
const WHOLE_READ_MAX = 1 << 20;
/** Read-ahead window for whole-read files. */
const READ_AHEAD_FILES = 64;
const READ_AHEAD_BYTES = 16 << 20;
/** Chunk size for streamed files. */
const STREAM_CHUNK = 1 << 20;

async function readDirectorySource(dir: string): Promise<Source> {
  const field = "--source";
  let root: string;
  try {
    root = await fsp.realpath(path.resolve(dir));
    if (!(await fsp.stat(root)).isDirectory()) throw new ConfigError(field, `"${dir}" is not a directory`);
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    throw new ConfigError(field, `cannot read "${dir}": ${describeError(err)}`, { cause: err });
  }
  const entries = await walkDirectory(root, field);
  return { entries, content: new DirectoryReader(root, field), field, root };
}

async function walkDirectory(root: string, field: string): Promise<Entry[]> {
  const limit = new Limiter(FS_CONCURRENCY);
  const entries: Entry[] = [];
  const guard = async <T>(rel: string, op: () => Promise<T>): Promise<T> => {
    try {
      return await limit.run(op);
    } catch (err) {
      throw new ConfigError(field, `cannot read "${rel || "."}": ${describeError(err)}`, { cause: err });
    }
  };

  const visit = async (rel: string): Promise<void> => {
    const dirents = await guard(rel, () => fsp.readdir(path.join(root, rel), { withFileTypes: true }));
    await Promise.all(
      dirents.map(async (d): Promise<void> => {
        if (SKIPPED_NAMES.has(d.name)) return;
        const childRel = rel === "" ? d.name : `${rel}/${d.name}`;
        const abs = path.join(root, childRel);
        if (d.isDirectory()) return visit(childRel);
        if (d.isSymbolicLink()) {
          entries.push({ kind: "symlink", path: childRel, target: await guard(childRel, () => fsp.readlink(abs)) });
          return;
        }
        if (d.isFile()) {
          const st = await guard(childRel, () => fsp.lstat(abs));
          if (!st.isFile()) throw new ConfigError(field, `"${childRel}" changed while it was being read`);
          entries.push({
            kind: "file",
            path: childRel,
            size: st.size,
            executable: (st.mode & 0o100) !== 0,
            origin: { from: "source", ref: childRel },
          });
          return;
        }
        throw new ConfigError(field, `"${childRel}" is not a regular file, directory or symlink`);
      }),
    );
  };
  await visit("");
  return entries;
}

/**
 * Reads a directory source's files: small ones whole and concurrently, a window ahead of the
 * writer, so thousands of small files do not cost a thread-pool round trip each in sequence;
 * large ones in chunks, so memory stays bounded.
 */
class DirectoryReader implements ContentReader {
  private queue: { file: FileEntry; ref: string }[] = [];
  private next = 0;
  private inFlightBytes = 0;
  private readonly ahead = new Map<FileEntry, Promise<Buffer>>();
  private readonly slab = new Slab(4 << 20);

  constructor(
    private readonly root: string,
    private readonly field: string,
  ) {}

  plan(files: readonly FileEntry[]): void {
    this.queue = files.flatMap((file) => (file.origin.from === "source" ? [{ file, ref: file.origin.ref }] : []));
    this.next = 0;
    this.fill();
  }

  async *read(file: FileEntry, ref: string): AsyncIterable<Buffer> {
    const pending = this.ahead.get(file);
    if (pending) {
      this.ahead.delete(file);
      const data = await pending;
      this.inFlightBytes -= file.size;
      this.fill();
      yield data;
      return;
    }
    yield* this.stream(file, ref);
  }

  close(): void {
    this.queue = [];
  }

  private fill(): void {
    while (this.next < this.queue.length && this.ahead.size < READ_AHEAD_FILES) {
      const item = this.queue[this.next];
      if (!item) break;
      if (item.file.size > WHOLE_READ_MAX) {
        // Streamed when its turn comes; keep reading ahead past it.
        this.next++;
        continue;
      }
      if (this.inFlightBytes + item.file.size > READ_AHEAD_BYTES && this.ahead.size > 0) break;
      this.next++;
      this.inFlightBytes += item.file.size;
      const p = this.readWhole(item.file, item.ref);
      // Settled later by `read`; until then a failure must not count as unhandled.
      p.catch(() => undefined);
      this.ahead.set(item.file, p);
    }
  }

  private async readWhole(file: FileEntry, ref: string): Promise<Buffer> {
    // Plain descriptors rather than FileHandles, and one read sized from the walk's lstat
    // plus a byte to notice growth: three thread-pool trips per file instead of readFile's four
    // or more, which is what thousands of small files cost.
    const data = this.slab.carve(file.size + 1);
    let got = 0;
    let fd: number;
    try {
      // O_NOFOLLOW: the walk saw a regular file; never read through a symlink swapped in since.
      fd = await openFd(path.join(this.root, ref), fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW);
    } catch (err) {
      throw new ConfigError(this.field, `cannot read "${ref}": ${describeError(err)}`, { cause: err });
    }
    try {
      for (;;) {
        const bytesRead = await readFd(fd, data, got, data.length - got, got);
        got += bytesRead;
        if (bytesRead === 0 || got === data.length) break;
      }
    } catch (err) {
      throw new ConfigError(this.field, `cannot read "${ref}": ${describeError(err)}`, { cause: err });
    } finally {
      await closeFd(fd).catch(() => undefined);
    }
    if (got !== file.size) throw this.changed(ref);
    return data.subarray(0, got);
  }

  private async *stream(file: FileEntry, ref: string): AsyncIterable<Buffer> {
    let handle: fsp.FileHandle;
    try {
      handle = await fsp.open(path.join(this.root, ref), fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW);
    } catch (err) {
      throw new ConfigError(this.field, `cannot read "${ref}": ${describeError(err)}`, { cause: err });
    }
    try {
      let left = file.size;
      while (left > 0) {
        const chunk = Buffer.allocUnsafe(Math.min(left, STREAM_CHUNK));
        const { bytesRead } = await handle.read(chunk, 0, chunk.length, file.size - left);
        if (bytesRead === 0) throw this.changed(ref);
        left -= bytesRead;
        yield bytesRead === chunk.length ? chunk : chunk.subarray(0, bytesRead);
      }
      const probe = await handle.read(Buffer.allocUnsafe(1), 0, 1, file.size);
      if (probe.bytesRead !== 0) throw this.changed(ref);
    } finally {
      await handle.close();
    }
  }

  private changed(ref: string): ConfigError {
    return new ConfigError(this.field, `"${ref}" changed size while it was being packaged`);
  }
}

/**
 * Hands out pieces of large shared buffers: thousands of small files then cost a handful of
 * allocations instead of one each, which is most of the garbage collector's work otherwise.
 * A slab is freed once nothing refers to any piece of it.
 */
class Slab {
  private current = Buffer.allocUnsafe(0);
  private used = 0;

  constructor(private readonly size: number) {}

  carve(n: number): Buffer {
    if (n > this.size / 4) return Buffer.allocUnsafe(n);
    if (this.used + n > this.current.length) {
      this.current = Buffer.allocUnsafe(this.size);
      this.used = 0;
    }
    const piece = this.current.subarray(this.used, this.used + n);
    // Keep pieces 8-byte aligned, as allocations would be.
    this.used += (n + 7) & ~7;
    return piece;
  }
}

const openFd = (file: string, flags: number): Promise<number> =>
  new Promise((resolve, reject) => fs.open(file, flags, (err, fd) => (err ? reject(err) : resolve(fd))));
const readFd = (fd: number, into: Buffer, offset: number, length: number, position: number): Promise<number> =>
  new Promise((resolve, reject) =>
    fs.read(fd, into, offset, length, position, (err, bytesRead) => (err ? reject(err) : resolve(bytesRead))),
  );
const closeFd = (fd: number): Promise<void> =>
  new Promise((resolve, reject) => fs.close(fd, (err) => (err ? reject(err) : resolve())));

/** A counting semaphore for async work. */
class Limiter {
  private readonly waiting: (() => void)[] = [];
  constructor(private free: number) {}

  async run<T>(op: () => Promise<T>): Promise<T> {
    if (this.free > 0) this.free--;
    else await new Promise<void>((resolve) => this.waiting.push(resolve));
    try {
      return await op();
    } finally {
      const wake = this.waiting.shift();
      if (wake) wake();
      else this.free++;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Git source

/**
 * Variables that would point git at a different repository than `repoDir` (they are set, for
 * instance, while a git hook runs).
 */
const GIT_LOCATION_VARIABLES = ["GIT_DIR", "GIT_WORK_TREE", "GIT_COMMON_DIR", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY"];

async function readGitSource(repoDir: string, commit: string, subdir: string | undefined): Promise<Source> {
  const field = "commit";
  if (commit === "" || commit.startsWith("-") || /[\s\0:]/.test(commit)) {
    throw new ConfigError(field, `"${commit}" is not a commit name`);
  }
  const git = new Git(path.resolve(repoDir), field);
  const revParse = await git.run(["rev-parse", "--verify", "--quiet", `${commit}^{commit}`]);
  if (revParse.code !== 0) throw new ConfigError(field, `"${commit}" is not a commit in ${repoDir}`);
  const commitId = revParse.stdout.toString("utf8").trim();

  let tree = commitId;
  if (subdir !== undefined) {
    const cleaned = subdir.replace(/\/+$/, "");
    if (!isCleanRelativePath(cleaned)) throw new ConfigError("subdir", `"${subdir}" is not a relative path inside the repository`);
    // `<commit>:<path>^{tree}` would read "^{tree}" as part of the path: ask for the type instead.
    const subtree = await git.run(["rev-parse", "--verify", "--quiet", `${commitId}:${cleaned}`]);
    tree = subtree.stdout.toString("utf8").trim();
    const type = subtree.code === 0 ? await git.run(["cat-file", "-t", tree]) : undefined;
    if (type?.code !== 0 || type.stdout.toString("utf8").trim() !== "tree") {
      throw new ConfigError("subdir", `"${subdir}" is not a directory in commit ${commitId}`);
    }
  }

  const listing = await git.run(["ls-tree", "-r", "-z", "-l", "--full-tree", tree]);
  if (listing.code !== 0) throw new ConfigError(field, `cannot list ${commitId}: ${listing.stderr.trim()}`);
  const entries: Entry[] = [];
  const symlinkIds = new Map<string, string>();
  for (const record of splitNul(listing.stdout)) {
    // "<mode> SP <type> SP <object> SP+ <size> TAB <path>"
    const tab = record.indexOf(0x09);
    const [mode, type, objectId, size] = record.subarray(0, Math.max(tab, 0)).toString("latin1").split(/ +/);
    const entryPath = record.subarray(tab + 1).toString("utf8");
    if (tab < 0 || !mode || !type || !objectId) throw new ConfigError(field, `unexpected ls-tree output "${record.toString()}"`);
    if (type === "commit") {
      // A submodule: its files live in another repository. Emit its directory, as
      // `git archive` does, so paths the app expects still exist.
      entries.push({ kind: "dir", path: entryPath });
      continue;
    }
    if (mode === "120000") {
      symlinkIds.set(entryPath, objectId);
      continue;
    }
    if (type !== "blob" || !/^\d+$/.test(size ?? "")) {
      throw new ConfigError(field, `unexpected ls-tree entry "${record.toString()}"`);
    }
    entries.push({
      kind: "file",
      path: entryPath,
      size: Number(size),
      executable: mode === "100755",
      origin: { from: "source", ref: objectId },
    });
  }
  if (symlinkIds.size > 0) {
    const targets = await git.readBlobs([...symlinkIds.values()]);
    let i = 0;
    for (const linkPath of symlinkIds.keys()) {
      entries.push({ kind: "symlink", path: linkPath, target: (targets[i++] ?? Buffer.alloc(0)).toString("utf8") });
    }
  }
  return { entries, content: new GitBlobReader(git), field, commit: commitId };
}

function* splitNul(data: Buffer): Generator<Buffer> {
  let start = 0;
  for (let end = data.indexOf(0, start); end >= 0; end = data.indexOf(0, start)) {
    yield data.subarray(start, end);
    start = end + 1;
  }
}

class Git {
  constructor(
    readonly repoDir: string,
    readonly field: string,
  ) {}

  spawn(args: string[]): ChildProcessWithoutNullStreams {
    const env: NodeJS.ProcessEnv = { ...process.env, GIT_TERMINAL_PROMPT: "0", LC_ALL: "C" };
    for (const name of GIT_LOCATION_VARIABLES) delete env[name];
    return spawn("git", ["-C", this.repoDir, ...args], { env, stdio: ["pipe", "pipe", "pipe"] });
  }

  async run(args: string[], input?: string): Promise<{ code: number; stdout: Buffer; stderr: string }> {
    const child = this.spawn(args);
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    child.stdout.on("data", (c: Buffer) => stdout.push(c));
    child.stderr.on("data", (c: Buffer) => stderr.push(c));
    // git may exit without reading its input (a bad revision); that is reported by the exit code.
    child.stdin.on("error", () => undefined);
    child.stdin.end(input ?? "");
    const code = await new Promise<number>((resolve, reject) => {
      child.on("error", (err) => reject(new ConfigError(this.field, `cannot run git: ${describeError(err)}`, { cause: err })));
      child.on("close", (c) => resolve(c ?? 128));
    });
    return { code, stdout: Buffer.concat(stdout), stderr: Buffer.concat(stderr).toString("utf8") };
  }

  /** Contents of a few small blobs (symlink targets), in order. */
  async readBlobs(ids: string[]): Promise<Buffer[]> {
    const result = await this.run(["cat-file", "--batch"], ids.map((id) => `${id}\n`).join(""));
    if (result.code !== 0) throw new ConfigError(this.field, `cannot read objects: ${result.stderr.trim()}`);
    const blobs: Buffer[] = [];
    let at = 0;
    for (const id of ids) {
      const eol = result.stdout.indexOf(0x0a, at);
      const [gotId, type, size] = result.stdout.subarray(at, eol).toString("latin1").split(" ");
      if (gotId !== id || type !== "blob" || size === undefined) throw new ConfigError(this.field, `cannot read object ${id}`);
      blobs.push(result.stdout.subarray(eol + 1, eol + 1 + Number(size)));
      at = eol + 1 + Number(size) + 1;
    }
    return blobs;
  }
}

/** Streams blob contents out of one `git cat-file --batch`, fed every planned object up front. */
class GitBlobReader implements ContentReader {
  private child: ChildProcessWithoutNullStreams | undefined;
  private reader: ByteReader | undefined;
  private stderr = "";
  private exit: Promise<number> | undefined;

  constructor(private readonly git: Git) {}

  plan(files: readonly FileEntry[]): void {
    const ids = files.flatMap((f) => (f.origin.from === "source" ? [f.origin.ref] : []));
    if (ids.length === 0) return;
    const child = this.git.spawn(["cat-file", "--batch"]);
    this.child = child;
    child.stderr.on("data", (c: Buffer) => (this.stderr += c.toString("utf8")));
    this.exit = new Promise<number>((resolve) => {
      child.on("error", () => resolve(128));
      child.on("close", (code) => resolve(code ?? 128));
    });
    // git answers in request order; it reads stdin as it writes stdout, so feed everything now
    // and let the pipe's backpressure pace it.
    child.stdin.on("error", () => undefined);
    child.stdin.end(ids.map((id) => `${id}\n`).join(""));
    // Piped from the start: when a child exits, Node resumes any of its output streams that no
    // one is reading yet and drops what they hold, and an async iterator only starts reading at
    // its first next(). A small repository's blobs can all be written, and git gone, before the
    // archive asks for the first one.
    this.reader = new ByteReader(child.stdout.pipe(new PassThrough({ highWaterMark: 1 << 20 })));
  }

  async *read(file: FileEntry, ref: string): AsyncIterable<Buffer> {
    const reader = this.reader;
    if (!reader) throw new Error("GitBlobReader.read called before plan");
    const header = await reader.line();
    if (header === undefined) throw await this.failure(`cat-file ended before ${ref}`);
    const [gotId, type, size] = header.split(" ");
    if (gotId !== ref || type !== "blob" || Number(size) !== file.size) {
      throw await this.failure(`unexpected cat-file answer "${header}" for ${ref} (${file.path})`);
    }
    yield* reader.take(file.size);
    await reader.take(1).next(); // the newline after each object
  }

  close(): void {
    // Only reached early on a failure; after a complete run git has already exited.
    if (this.child && this.child.exitCode === null) this.child.kill();
  }

  private async failure(what: string): Promise<ConfigError> {
    this.close();
    await this.exit;
    return new ConfigError(this.git.field, `${what}${this.stderr ? `: ${this.stderr.trim()}` : ""}`);
  }
}

/** Line and exact-length reads over a byte stream. */
class ByteReader {
  private readonly chunks: AsyncIterator<Buffer>;
  private buffered: Buffer = Buffer.alloc(0);
  private ended = false;

  constructor(stream: AsyncIterable<Buffer>) {
    this.chunks = stream[Symbol.asyncIterator]();
  }

  private async pull(): Promise<boolean> {
    if (this.ended) return false;
    const next = await this.chunks.next();
    if (next.done) {
      this.ended = true;
      return false;
    }
    this.buffered = this.buffered.length === 0 ? next.value : Buffer.concat([this.buffered, next.value]);
    return true;
  }

  async line(): Promise<string | undefined> {
    for (;;) {
      const eol = this.buffered.indexOf(0x0a);
      if (eol >= 0) {
        const line = this.buffered.subarray(0, eol).toString("latin1");
        this.buffered = this.buffered.subarray(eol + 1);
        return line;
      }
      if (!(await this.pull())) return undefined;
    }
  }

  async *take(n: number): AsyncGenerator<Buffer> {
    let left = n;
    while (left > 0) {
      if (this.buffered.length === 0 && !(await this.pull())) throw new Error(`stream ended ${left} bytes early`);
      const piece = this.buffered.subarray(0, Math.min(left, this.buffered.length));
      this.buffered = this.buffered.subarray(piece.length);
      left -= piece.length;
      yield piece;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Output

async function prepareOutDir(outDir: string | undefined, sourceRoot: string | undefined): Promise<string> {
  const wanted = outDir ?? os.tmpdir();
  // Checked before anything is created, so a refused outDir leaves no trace in the source.
  if (sourceRoot !== undefined && isWithin(await realpathOfMaybeMissing(wanted), sourceRoot)) {
    throw new ConfigError("outDir", `"${wanted}" is inside the source "${sourceRoot}"; the archive must be written outside it`);
  }
  try {
    if (outDir === undefined) return await fsp.mkdtemp(path.join(await fsp.realpath(wanted), "zcp-package-"));
    await fsp.mkdir(outDir, { recursive: true });
    return await fsp.realpath(outDir);
  } catch (err) {
    throw new ConfigError("outDir", `cannot create "${wanted}": ${describeError(err)}`, { cause: err });
  }
}

/** The real path `p` has or would have: its deepest existing ancestor resolved, the rest appended. */
async function realpathOfMaybeMissing(p: string): Promise<string> {
  const missing: string[] = [];
  for (let at = path.resolve(p); ; at = path.dirname(at)) {
    try {
      return path.join(await fsp.realpath(at), ...missing.reverse());
    } catch {
      if (path.dirname(at) === at) return path.resolve(p);
      missing.push(path.basename(at));
    }
  }
}

function isWithin(child: string, parent: string): boolean {
  const rel = path.relative(parent, child);
  return rel === "" || (!rel.startsWith(`..${path.sep}`) && rel !== ".." && !path.isAbsolute(rel));
}

async function writeArchive(
  entries: readonly Entry[],
  content: ContentReader,
  outDir: string,
  concurrency: number,
): Promise<{ path: string; sha256: string; bytes: number }> {
  content.plan(entries.filter((e): e is FileEntry => e.kind === "file"));
  const partial = path.join(outDir, `.zcp-package-${randomBytes(6).toString("hex")}.partial`);
  let handle: fsp.FileHandle | undefined;
  try {
    handle = await fsp.open(partial, "wx");
    const gzip = new BlockGzip(handle, concurrency);
    for await (const block of tarBlocks(entries, content)) await gzip.push(block);
    const { sha256, bytes } = await gzip.finish();
    await handle.close();
    handle = undefined;
    const finalPath = path.join(outDir, `${sha256}.tar.gz`);
    await fsp.rename(partial, finalPath);
    return { path: finalPath, sha256, bytes };
  } catch (err) {
    await handle?.close().catch(() => undefined);
    await fsp.rm(partial, { force: true });
    if (err instanceof ConfigError) throw err;
    throw new StepError("Writing the package", partial, err);
  }
}

/** deflate's window: how far back a match may reach, and so the dictionary a block needs. */
const DEFLATE_WINDOW = 32 * 1024;
/**
 * gzip header: magic, deflate, no flags (so no name), mtime 0, no extra flags, OS 3 (Unix).
 * Written here rather than by zlib, which puts the build platform in the OS byte.
 */
const GZIP_HEADER = Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3]);

/**
 * One gzip member compressed block by block on several threads, the way pigz does it: each
 * block is deflated on its own with the previous block's last 32 KiB as dictionary, so matches
 * still reach back across the boundary, and ends with a sync flush, so the pieces concatenate
 * into one deflate stream. The bytes depend only on the block boundaries (fixed by
 * GZIP_INPUT_BLOCK), never on thread timing. Output is written and hashed in order.
 */
class BlockGzip {
  private readonly inFlight: Promise<Buffer>[] = [];
  private readonly hash: Hash = createHash("sha256");
  private dictionary: Buffer | undefined;
  private started = false;
  private crc = 0;
  private inputBytes = 0;
  private outputBytes = 0;

  constructor(
    private readonly out: fsp.FileHandle,
    private readonly concurrency: number,
  ) {}

  async push(block: Buffer): Promise<void> {
    await this.start();
    this.crc = crc32(block, this.crc);
    this.inputBytes += block.length;
    const compressed = deflateBlock(block, this.dictionary, constants.Z_SYNC_FLUSH);
    compressed.catch(() => undefined); // awaited in order below
    this.inFlight.push(compressed);
    this.dictionary = block.length >= DEFLATE_WINDOW ? block.subarray(block.length - DEFLATE_WINDOW) : block;
    while (this.inFlight.length >= this.concurrency) await this.writeOldest();
  }

  async finish(): Promise<{ sha256: string; bytes: number }> {
    await this.start();
    while (this.inFlight.length > 0) await this.writeOldest();
    // A final empty block closes the deflate stream; then CRC-32 and length mod 2^32.
    await this.write(await deflateBlock(Buffer.alloc(0), undefined, constants.Z_FINISH));
    const trailer = Buffer.alloc(8);
    trailer.writeUInt32LE(this.crc >>> 0, 0);
    trailer.writeUInt32LE(this.inputBytes % 2 ** 32, 4);
    await this.write(trailer);
    return { sha256: this.hash.digest("hex"), bytes: this.outputBytes };
  }

  private async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    await this.write(GZIP_HEADER);
  }

  private async writeOldest(): Promise<void> {
    const next = this.inFlight.shift();
    if (next) await this.write(await next);
  }

  private async write(data: Buffer): Promise<void> {
    this.hash.update(data);
    this.outputBytes += data.length;
    let at = 0;
    while (at < data.length) at += (await this.out.write(data, at, data.length - at)).bytesWritten;
  }
}

function deflateBlock(block: Buffer, dictionary: Buffer | undefined, flush: number): Promise<Buffer> {
  return new Promise((resolve, reject) =>
    deflateRaw(
      block,
      {
        level: PACKAGE_GZIP_LEVEL,
        // Room for the whole block in one output chunk: one thread-pool trip per block.
        chunkSize: GZIP_INPUT_BLOCK + 64 * 1024,
        finishFlush: flush,
        ...(dictionary ? { dictionary } : {}),
      },
      (err, out) => (err ? reject(err) : resolve(out)),
    ),
  );
}

/** Blocks compressed at once: the cores, but leave thread-pool room for reading files. */
export function defaultConcurrency(): number {
  return Math.max(1, Math.min(os.availableParallelism(), 3));
}

// ---------------------------------------------------------------------------------------------
// Tar writer

const BLOCK = 512;
/** Size of every piece handed to gzip but the last (a multiple of BLOCK). */
const GZIP_INPUT_BLOCK = 1 << 20;
/** tar's default record: 20 blocks. */
const RECORD = 20 * BLOCK;
const USTAR_NAME_MAX = 100;
const USTAR_PREFIX_MAX = 155;
/** Largest size the 11 octal digits of the size field hold. */
const USTAR_SIZE_MAX = 8 ** 11 - 1;

/** The archive, in pieces of exactly GZIP_INPUT_BLOCK bytes except the last. */
async function* tarBlocks(entries: readonly Entry[], content: ContentReader): AsyncGenerator<Buffer> {
  const out = new BlockBuffer(GZIP_INPUT_BLOCK);
  let written = 0;
  const emit = function* (data: Buffer): Generator<Buffer> {
    written += data.length;
    yield* out.write(data);
  };
  for (const entry of entries) {
    for (const header of entryHeaders(entry)) yield* emit(header);
    if (entry.kind !== "file") continue;
    let copied = 0;
    const chunks = entry.origin.from === "inline" ? [entry.origin.data] : content.read(entry, entry.origin.ref);
    for await (const chunk of chunks) {
      copied += chunk.length;
      yield* emit(chunk);
    }
    if (copied !== entry.size) throw new Error(`${entry.path}: read ${copied} bytes, expected ${entry.size}`);
    yield* emit(ZEROS.subarray(0, padding(entry.size)));
  }
  // Two zero blocks end the archive; zeros up to a whole record, as tar writes them.
  const end = 2 * BLOCK;
  const total = written + end;
  yield* emit(Buffer.alloc(end + ((RECORD - (total % RECORD)) % RECORD)));
  yield* out.flush();
}

const ZEROS = Buffer.alloc(BLOCK);

function padding(size: number): number {
  return (BLOCK - (size % BLOCK)) % BLOCK;
}

/** Re-cuts a byte stream into pieces of one fixed size. */
class BlockBuffer {
  private block: Buffer;
  private used = 0;

  constructor(private readonly size: number) {
    this.block = Buffer.allocUnsafe(size);
  }

  *write(data: Buffer): Generator<Buffer> {
    let at = 0;
    while (at < data.length) {
      const n = Math.min(this.size - this.used, data.length - at);
      data.copy(this.block, this.used, at, at + n);
      this.used += n;
      at += n;
      if (this.used === this.size) {
        yield this.block;
        // gzip holds on to what it was given until it has compressed it: never reuse.
        this.block = Buffer.allocUnsafe(this.size);
        this.used = 0;
      }
    }
  }

  *flush(): Generator<Buffer> {
    if (this.used > 0) yield this.block.subarray(0, this.used);
    this.used = 0;
  }
}

/** The header block(s) of one entry: a PAX header first when ustar cannot hold it. */
function entryHeaders(entry: Entry): Buffer[] {
  const name = Buffer.from(entry.kind === "dir" ? `${entry.path}/` : entry.path, "utf8");
  const linkName = entry.kind === "symlink" ? Buffer.from(entry.target, "utf8") : Buffer.alloc(0);
  const size = entry.kind === "file" ? entry.size : 0;
  const pax: [string, Buffer][] = [];

  const split = splitUstarName(name);
  if (!split) pax.push(["path", name]);
  if (linkName.length > USTAR_NAME_MAX) pax.push(["linkpath", linkName]);
  if (size > USTAR_SIZE_MAX) pax.push(["size", Buffer.from(String(size))]);

  const headers: Buffer[] = [];
  if (pax.length > 0) {
    const body = Buffer.concat(pax.map(([key, value]) => paxRecord(key, value)));
    headers.push(
      ustarHeader({ name: Buffer.from("PaxHeader"), prefix: undefined, mode: 0o644, size: body.length, type: "x", linkName: undefined }),
      body,
      ZEROS.subarray(0, padding(body.length)),
    );
  }
  headers.push(
    ustarHeader({
      name: split ? split.name : name.subarray(0, USTAR_NAME_MAX),
      prefix: split?.prefix,
      mode: entry.kind === "dir" ? 0o755 : entry.kind === "symlink" ? 0o777 : entry.executable ? 0o755 : 0o644,
      size: size > USTAR_SIZE_MAX ? 0 : size,
      type: entry.kind === "dir" ? "5" : entry.kind === "symlink" ? "2" : "0",
      linkName: linkName.subarray(0, USTAR_NAME_MAX),
    }),
  );
  return headers;
}

/** Fits a name into ustar's name (100 bytes) and prefix (155 bytes) fields, split at a '/'. */
function splitUstarName(name: Buffer): { name: Buffer; prefix: Buffer | undefined } | undefined {
  if (name.length <= USTAR_NAME_MAX) return { name, prefix: undefined };
  // The split slash is dropped; the name part must not be empty (it would read as a directory).
  const lowest = name.length - USTAR_NAME_MAX - 1;
  for (let i = name.indexOf(0x2f, Math.max(lowest, 0)); i >= 0 && i <= USTAR_PREFIX_MAX; i = name.indexOf(0x2f, i + 1)) {
    if (i > 0 && i < name.length - 1) return { name: name.subarray(i + 1), prefix: name.subarray(0, i) };
  }
  return undefined;
}

/** One PAX record, `"<length> <key>=<value>\n"`, where length counts the whole record. */
function paxRecord(key: string, value: Buffer): Buffer {
  const rest = Buffer.byteLength(` ${key}=`) + value.length + 1;
  let length = rest + 1;
  while (String(length).length + rest !== length) length = String(length).length + rest;
  return Buffer.concat([Buffer.from(`${length} ${key}=`), value, Buffer.from("\n")]);
}

interface UstarFields {
  name: Buffer;
  prefix: Buffer | undefined;
  mode: number;
  size: number;
  type: "0" | "2" | "5" | "x";
  linkName: Buffer | undefined;
}

function ustarHeader(f: UstarFields): Buffer {
  const h = Buffer.alloc(BLOCK);
  f.name.copy(h, 0);
  octal(h, 100, 8, f.mode);
  octal(h, 108, 8, 0); // uid
  octal(h, 116, 8, 0); // gid
  octal(h, 124, 12, f.size);
  octal(h, 136, 12, PACKAGE_MTIME);
  h.write(f.type, 156, "latin1");
  f.linkName?.copy(h, 157);
  h.write("ustar\u000000", 257, "latin1");
  // uname (265) and gname (297) stay empty: extractors then use the numeric 0/0.
  octal(h, 329, 8, 0); // devmajor
  octal(h, 337, 8, 0); // devminor
  f.prefix?.copy(h, 345);
  // The checksum is computed with its own field read as spaces.
  h.fill(0x20, 148, 156);
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += h[i] ?? 0;
  h.write(`${sum.toString(8).padStart(6, "0")}\u0000 `, 148, "latin1");
  return h;
}

/** A numeric field: zero-padded octal digits and a terminating NUL. */
function octal(h: Buffer, offset: number, width: number, value: number): void {
  h.write(`${value.toString(8).padStart(width - 1, "0")}\u0000`, offset, "latin1");
}
