/**
 * gzip of the archive, block-parallel: the tar stream is cut into fixed 1 MiB blocks and
 * compressed at level 6 (gzip's default) on several threads; the bytes depend only on the
 * block boundaries, never on the thread count. The gzip header is written here, fixed: no
 * file name, mtime 0, OS byte 3 (Unix). What is not pinned is the deflate implementation:
 * builds of Node with a different zlib (`process.versions.zlib`) may compress the same tar
 * differently, so "same sha256 on any machine" holds for the same Node release.
 *
 * bench/packaging.ts measures this against one thread (`concurrency: 1`) and `tar | gzip -6`
 * in the same run. On a machine whose cores were busy elsewhere the extra threads gained
 * nothing (docs/benchmarks.md); whether one thread keeps up with `gzip -6` on an idle machine
 * is for that bench to show before this is replaced by a plain deflate stream.
 */
import { createHash, type Hash } from "node:crypto";
import type * as fsp from "node:fs/promises";
import * as os from "node:os";
import { constants, crc32, deflateRaw } from "node:zlib";

/** gzip level; 6 is gzip's own default, the usual size/speed balance. */
export const PACKAGE_GZIP_LEVEL = 6;
/** Size of every piece handed to gzip but the last. */
export const GZIP_INPUT_BLOCK = 1 << 20;

/** Where compressed bytes go, in order. */
export interface ByteSink {
  write(data: Buffer): Promise<void>;
}

/** A file handle as a {@link ByteSink}. */
export function fileSink(out: fsp.FileHandle): ByteSink {
  return {
    async write(data: Buffer): Promise<void> {
      let at = 0;
      while (at < data.length) at += (await out.write(data, at, data.length - at)).bytesWritten;
    },
  };
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
export class BlockGzip {
  private readonly inFlight: Promise<Buffer>[] = [];
  private readonly hash: Hash = createHash("sha256");
  private dictionary: Buffer | undefined;
  private started = false;
  private crc = 0;
  private inputBytes = 0;
  private outputBytes = 0;

  constructor(
    private readonly out: ByteSink,
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
    await this.out.write(data);
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

