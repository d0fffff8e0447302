/**
 * A git source: the blobs of a commit's tree (or one directory of it), byte for byte as
 * committed, read from the object store through `git cat-file --batch`, never the work tree.
 */
import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import * as path from "node:path";
import { PassThrough } from "node:stream";
import { ConfigError, describeError } from "../../shared/errors.js";
import { isCleanRelativePath, type ContentReader, type Entry, type FileEntry, type PlannedFile, type Source } from "./entries.js";
import { IGNORE_FILE, PathFilter } from "./ignore.js";

/**
 * Variables that would point git at a different repository than `repoDir` (they are set, for
 * instance, while a git hook runs).
 */
const GIT_LOCATION_VARIABLES = ["GIT_DIR", "GIT_WORK_TREE", "GIT_COMMON_DIR", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY"];

export async function readGitSource(repoDir: string, commit: string, subdir: string | undefined): Promise<Source> {
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
  const records = [...splitNul(listing.stdout)];
  const filter = new PathFilter(await readCommittedIgnoreFile(git, records));
  const entries: Entry[] = [];
  const symlinkIds = new Map<string, string>();
  for (const record of records) {
    // "<mode> SP <type> SP <object> SP+ <size> TAB <path>"
    const tab = record.indexOf(0x09);
    const [mode, type, objectId, size] = record.subarray(0, Math.max(tab, 0)).toString("latin1").split(/ +/);
    const entryPath = record.subarray(tab + 1).toString("utf8");
    if (tab < 0 || !mode || !type || !objectId) throw new ConfigError(field, `unexpected ls-tree output "${record.toString()}"`);
    if (type === "commit" ? !filter.includesDir(entryPath) : !filter.includesFile(entryPath)) continue;
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

/** The committed `.zcpignore` at the root of the packaged tree, if there is one. */
async function readCommittedIgnoreFile(git: Git, records: readonly Buffer[]): Promise<string | undefined> {
  for (const record of records) {
    const tab = record.indexOf(0x09);
    if (tab < 0 || record.subarray(tab + 1).toString("utf8") !== IGNORE_FILE) continue;
    const [mode, , objectId] = record.subarray(0, tab).toString("latin1").split(/ +/);
    if (mode === "120000") throw new ConfigError(git.field, `"${IGNORE_FILE}" must be a regular file, not a symlink`);
    if (!objectId) return undefined;
    const [blob] = await git.readBlobs([objectId]);
    return blob?.toString("utf8");
  }
  return undefined;
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

  plan(files: readonly PlannedFile[]): void {
    const ids = files.map((f) => f.ref);
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

