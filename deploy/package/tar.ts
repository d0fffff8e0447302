/**
 * The tar stream of an archive, written by `tar-stream` (a maintained ustar/PAX writer) from
 * entries already sorted and normalised, so that the bytes depend only on the entries:
 * - every entry owned by 0/0 with empty user and group names (`tar -tv` shows `0/0`), dated
 *   {@link PACKAGE_MTIME} (2000-01-01T00:00:00Z: a fixed date that no tool treats as "unset",
 *   unlike 0);
 * - modes normalised: 0755 for directories and for files whose owner-execute bit is set (the
 *   bit git records), 0644 for other files, 0777 for symlinks;
 * - what ustar cannot hold (a path over its name and prefix fields, a non-ASCII path, a link
 *   target over 100 bytes) goes in a PAX extended header, which tar-stream writes;
 * - with a manifest, the manifest last (after the sorted entries), since it lists the digests
 *   of everything before it, taken as it was written;
 * - closed by two zero blocks (tar-stream's end of archive) and padded here to a whole 10 KiB
 *   record, as tar itself writes.
 * The stream comes out re-cut into pieces of exactly {@link GZIP_INPUT_BLOCK} bytes (but the
 * last), the boundaries the block-parallel gzip depends on.
 */
import { once } from "node:events";
import { pack as tarPack, type Header, type Pack } from "tar-stream";
import { fileContent, type ContentReader, type Entry } from "./entries.js";
import { GZIP_INPUT_BLOCK } from "./gzip.js";
import { DigestCollector, type ManifestSpec } from "./manifest.js";

/** Modification time of every entry: 2000-01-01T00:00:00Z, in seconds since the epoch. */
export const PACKAGE_MTIME = 946_684_800;

const BLOCK = 512;
/** tar's default record: 20 blocks. */
const RECORD = 20 * BLOCK;
const MTIME = new Date(PACKAGE_MTIME * 1000);

function headerOf(entry: Entry): Partial<Header> & Pick<Header, "name"> {
  const common = { uid: 0, gid: 0, uname: "", gname: "", mtime: MTIME };
  switch (entry.kind) {
    case "dir":
      return { ...common, name: `${entry.path}/`, type: "directory", mode: 0o755 };
    case "symlink":
      return { ...common, name: entry.path, type: "symlink", mode: 0o777, linkname: entry.target };
    case "file":
      return { ...common, name: entry.path, type: "file", mode: entry.executable ? 0o755 : 0o644, size: entry.size };
  }
}

/** Adds one entry, resolving once tar-stream has taken all of it. */
async function addEntry(archive: Pack, entry: Entry, sourceReader: ContentReader, digests: DigestCollector | undefined): Promise<void> {
  let finish!: (err?: Error | null) => void;
  const taken = new Promise<void>((resolve, reject) => {
    finish = (err) => (err ? reject(err) : resolve());
  });
  const digest = digests?.begin(entry);
  if (entry.kind !== "file") {
    archive.entry(headerOf(entry), finish);
    return taken;
  }
  const content = fileContent(entry, sourceReader);
  if (Array.isArray(content) && content.length === 1 && content[0]) {
    digest?.update(content[0]);
    digest?.end();
    archive.entry(headerOf(entry), content[0], finish);
    return taken;
  }
  const sink = archive.entry(headerOf(entry), finish);
  let copied = 0;
  try {
    for await (const chunk of content) {
      copied += chunk.length;
      digest?.update(chunk);
      if (!sink.write(chunk)) await once(sink, "drain");
    }
  } catch (err) {
    sink.destroy(err as Error);
    throw err;
  }
  if (copied !== entry.size) throw new Error(`${entry.path}: read ${copied} bytes, expected ${entry.size}`);
  digest?.end();
  sink.end(undefined); // streamx types its optional argument as required
  return taken;
}

/** The archive of `entries`, in pieces of exactly GZIP_INPUT_BLOCK bytes except the last. */
export async function* tarBlocks(entries: readonly Entry[], sourceReader: ContentReader, manifest?: ManifestSpec): AsyncGenerator<Buffer> {
  const archive = tarPack();
  const digests = manifest ? new DigestCollector() : undefined;
  let failure: unknown;
  const produced = (async () => {
    for (const entry of entries) await addEntry(archive, entry, sourceReader, digests);
    if (manifest && digests) {
      const data = Buffer.from(manifest.render(digests.digests), "utf8");
      const last: Entry = { kind: "file", path: manifest.path, size: data.length, executable: false, origin: { from: "inline", data } };
      await addEntry(archive, last, sourceReader, undefined);
    }
    archive.finalize();
  })().catch((err: unknown) => {
    failure = err;
    archive.destroy(err instanceof Error ? err : new Error(String(err)));
  });

  const out = new BlockBuffer(GZIP_INPUT_BLOCK);
  let written = 0;
  let complete = false;
  try {
    for await (const chunk of archive as AsyncIterable<Buffer>) {
      written += chunk.length;
      yield* out.write(chunk);
    }
    complete = true;
  } catch (err) {
    await produced;
    throw failure ?? err;
  } finally {
    // The consumer stopped early (gzip or the output failed): stop the producer too.
    if (!complete) archive.destroy(new Error("archive abandoned"));
  }
  await produced;
  if (failure !== undefined) throw failure;
  // Zeros up to a whole record after tar-stream's two end blocks, as tar writes them.
  yield* out.write(Buffer.alloc((RECORD - (written % RECORD)) % RECORD));
  yield* out.flush();
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

