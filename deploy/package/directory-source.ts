/**
 * A directory source: the files under a directory, walked concurrently, filtered by the
 * {@link PathFilter}, and read back a window ahead of the archive writer.
 */
import * as fs from "node:fs";
import { constants as fsConstants } from "node:fs";
import * as fsp from "node:fs/promises";
import * as path from "node:path";
import { ConfigError, describeError } from "../../shared/errors.js";
import type { ContentReader, Entry, FileEntry, PlannedFile, Source } from "./entries.js";
import { IGNORE_FILE, PathFilter } from "./ignore.js";

/** Bound on concurrent filesystem calls while walking the tree. */
const FS_CONCURRENCY = 32;
/** Files up to this size are read whole, ahead of need; larger ones are streamed. */
const WHOLE_READ_MAX = 1 << 20;
/** Read-ahead window for whole-read files. */
const READ_AHEAD_FILES = 64;
const READ_AHEAD_BYTES = 16 << 20;
/** Chunk size for streamed files. */
const STREAM_CHUNK = 1 << 20;

/**
 * Reads a directory source. `field` names it in errors; `applyIgnores` is false for trees the
 * packager's caller assembled itself (dependencies), which are packaged whole.
 */
export async function readDirectorySource(dir: string, field = "--source", applyIgnores = true): Promise<Source> {
  let root: string;
  try {
    root = await fsp.realpath(path.resolve(dir));
    if (!(await fsp.stat(root)).isDirectory()) throw new ConfigError(field, `"${dir}" is not a directory`);
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    throw new ConfigError(field, `cannot read "${dir}": ${describeError(err)}`, { cause: err });
  }
  const filter = applyIgnores ? new PathFilter(await readIgnoreFile(root, field)) : undefined;
  const entries = await walkDirectory(root, field, filter);
  return { entries, content: new DirectoryReader(root, field), field, root };
}

async function readIgnoreFile(root: string, field: string): Promise<string | undefined> {
  const file = path.join(root, IGNORE_FILE);
  try {
    const st = await fsp.lstat(file);
    if (!st.isFile()) throw new ConfigError(field, `"${IGNORE_FILE}" must be a regular file`);
    return await fsp.readFile(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    if (err instanceof ConfigError) throw err;
    throw new ConfigError(field, `cannot read "${IGNORE_FILE}": ${describeError(err)}`, { cause: err });
  }
}

async function walkDirectory(root: string, field: string, filter: PathFilter | undefined): Promise<Entry[]> {
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
        const childRel = rel === "" ? d.name : `${rel}/${d.name}`;
        const abs = path.join(root, childRel);
        if (d.isDirectory()) return filter && !filter.includesDir(childRel) ? undefined : visit(childRel);
        if (filter && !filter.includesFile(childRel)) return;
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
export class DirectoryReader implements ContentReader {
  private queue: readonly PlannedFile[] = [];
  private next = 0;
  private inFlightBytes = 0;
  private readonly ahead = new Map<FileEntry, Promise<Buffer>>();
  private readonly slab = new Slab(4 << 20);

  constructor(
    private readonly root: string,
    private readonly field: string,
  ) {}

  plan(files: readonly PlannedFile[]): void {
    this.queue = files;
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
export class Limiter {
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

