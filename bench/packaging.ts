/**
 * Packaging throughput of an app with dependencies: what `zcp build` packages (the source tree,
 * the dependencies it resolved under `.zcp/`, and the manifest of every file's sha256, which
 * costs a second read of every file) against `tar -cf - app deps | gzip -6` on the same bytes,
 * on the same machine, in the same run. Each side runs three times, alternating, and the best
 * time counts. A third side, the same packaging with one compression thread (`concurrency: 1`),
 * shows whether the block-parallel gzip is still needed to keep up with `tar | gzip -6`. The
 * last line is the one a bench runner reads:
 *
 *   packaging: ratio X.XX (zcp/baseline throughput), single-thread gzip ratio Y.YY, reproducible: yes|no
 *
 * where reproducible means every zcp run (either thread count) produced the same sha256.
 *
 * Usage: node dist/bench/packaging.js [--mb N] [--seed S] [--runs R]
 *   --mb    size of the generated tree in MB (10^6 bytes) @default 200
 *   --seed  seed of the generated content @default 1
 *   --runs  runs of each side @default 3
 *
 * The tree mixes what a service release holds: many small files (1–8 KB, mostly source-like
 * text, some binary) making up about 45% of the bytes, and a few large files (about 12 MB
 * each) of text, logs and incompressible data for the rest. The dependencies add a fifth of
 * that again: wheels and npm cache entries, already compressed (incompressible bytes) in files
 * of 20 KB to 2 MB. Content is a pure function of the seed (AES-CTR keystream), so two machines
 * benchmark the same bytes.
 */
import { spawn } from "node:child_process";
import { createCipheriv, createHash } from "node:crypto";
import * as fs from "node:fs";
import * as fsp from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import { performance } from "node:perf_hooks";
import { packageSource, type PackageOptions } from "../deploy/package/index.js";

const MB = 1_000_000;
const SMALL_SHARE = 0.45;
const SMALL_MIN = 1024;
const SMALL_MAX = 8192;
const FILES_PER_DIR = 50;
const LARGE_TARGET = 12 * MB;
const DEPENDENCY_SHARE = 0.2;

interface BenchArgs {
  mb: number;
  seed: number;
  runs: number;
}

function parseArgs(argv: string[]): BenchArgs {
  const args: BenchArgs = { mb: 200, seed: 1, runs: 3 };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = Number(argv[i + 1]);
    if (flag !== "--mb" && flag !== "--seed" && flag !== "--runs") throw new Error(`unknown argument ${flag}`);
    if (!Number.isFinite(value) || value <= 0) throw new Error(`${flag} needs a positive number`);
    args[flag.slice(2) as keyof BenchArgs] = flag === "--mb" ? value : Math.floor(value);
    i++;
  }
  return args;
}

/** Deterministic bytes: an AES-128-CTR keystream keyed by the seed. */
class SeededBytes {
  private readonly cipher;
  private pool: Buffer = Buffer.alloc(0);
  private at = 0;

  constructor(seed: number) {
    const key = createHash("sha256").update(`zcp-bench-packaging:${seed}`).digest();
    this.cipher = createCipheriv("aes-128-ctr", key.subarray(0, 16), key.subarray(16, 32));
  }

  bytes(n: number): Buffer {
    return Buffer.from(this.cipher.update(Buffer.alloc(n)));
  }

  /** Uniform integer in [lo, hi]. */
  int(lo: number, hi: number): number {
    if (this.at + 4 > this.pool.length) {
      this.pool = this.bytes(64 * 1024);
      this.at = 0;
    }
    const v = this.pool.readUInt32LE(this.at);
    this.at += 4;
    return lo + (v % (hi - lo + 1));
  }
}

/** Source-like text from a fixed vocabulary: compresses roughly as code and prose do. */
class TextMaker {
  private readonly words: string[] = [];

  constructor(private readonly rng: SeededBytes) {
    const letters = "etaoinshrdlcumwfgypbvkjxqz_";
    for (let i = 0; i < 4000; i++) {
      let w = "";
      const len = rng.int(2, 11);
      // Skewed towards frequent letters, like identifiers and English.
      for (let j = 0; j < len; j++) w += letters[Math.min(rng.int(0, 26), rng.int(0, 26))];
      this.words.push(w);
    }
  }

  text(size: number, style: "code" | "log"): Buffer {
    const parts: string[] = [];
    let length = 0;
    let line = 0;
    while (length < size) {
      let s: string;
      if (style === "log") {
        s = `2026-03-${String(1 + (line % 28)).padStart(2, "0")}T${String(line % 24).padStart(2, "0")}:${String(
          line % 60,
        ).padStart(2, "0")}:00Z INFO ${this.word()} request_id=${this.rng.int(0, 1e9)} took=${this.rng.int(0, 999)}ms ${this.phrase(6)}\n`;
      } else {
        const indent = "  ".repeat(this.rng.int(0, 4));
        s = `${indent}const ${this.word()} = ${this.word()}(${this.phrase(3).replaceAll(" ", ", ")}); // ${this.phrase(5)}\n`;
      }
      parts.push(s);
      length += s.length;
      line++;
    }
    return Buffer.from(parts.join(""), "latin1").subarray(0, size);
  }

  private word(): string {
    return this.words[Math.min(this.rng.int(0, 3999), this.rng.int(0, 3999))] ?? "x";
  }

  private phrase(n: number): string {
    const out: string[] = [];
    for (let i = 0; i < n; i++) out.push(this.word());
    return out.join(" ");
  }
}

/** Writes the tree; returns its size in bytes and its file count. */
async function generateTree(root: string, args: BenchArgs): Promise<{ bytes: number; files: number }> {
  const rng = new SeededBytes(args.seed);
  const text = new TextMaker(rng);
  const total = args.mb * MB;
  let bytes = 0;
  let files = 0;
  const write = async (rel: string, data: Buffer): Promise<void> => {
    await fsp.mkdir(path.dirname(path.join(root, rel)), { recursive: true });
    await fsp.writeFile(path.join(root, rel), data);
    bytes += data.length;
    files++;
  };

  const smallBudget = total * SMALL_SHARE;
  const extensions = ["ts", "js", "json", "py", "md", "css", "html", "png"];
  let pending: Promise<void>[] = [];
  for (let n = 0; bytes + pending.length * 4608 < smallBudget; n++) {
    const ext = extensions[rng.int(0, extensions.length - 1)] ?? "txt";
    const size = rng.int(SMALL_MIN, SMALL_MAX);
    const data = ext === "png" ? rng.bytes(size) : text.text(size, "code");
    const dir = Math.floor(n / FILES_PER_DIR);
    let rel = `src/pkg${String(Math.floor(dir / 20)).padStart(3, "0")}/mod${String(dir % 20).padStart(2, "0")}/file${n}.${ext}`;
    // A few paths long enough to need the ustar prefix or a PAX header.
    if (n % 997 === 0) rel = `src/deep/${"nested-directory-name/".repeat(6 + (n % 7))}file${n}.${ext}`;
    pending.push(write(rel, data));
    if (pending.length >= 64) {
      await Promise.all(pending);
      pending = [];
    }
  }
  await Promise.all(pending);

  const kinds = ["code", "random", "log", "code"] as const;
  for (let i = 0; bytes < total; i++) {
    const size = Math.min(LARGE_TARGET, total - bytes);
    const kind = kinds[i % kinds.length] ?? "code";
    const data = kind === "random" ? rng.bytes(size) : text.text(size, kind);
    await write(`assets/large-${i}.${kind === "random" ? "bin" : kind === "log" ? "log" : "js"}`, data);
  }
  return { bytes, files };
}

/** Dependencies as `zcp build` leaves them: compressed archives, a fifth of the app's size. */
async function generateDependencies(root: string, args: BenchArgs): Promise<{ bytes: number; files: number }> {
  const rng = new SeededBytes(args.seed + 1_000_003);
  const total = args.mb * MB * DEPENDENCY_SHARE;
  let bytes = 0;
  let files = 0;
  for (let i = 0; bytes < total; i++) {
    const size = Math.min(rng.int(20_000, 2_000_000), Math.ceil(total - bytes));
    const rel = i % 2 === 0 ? `wheels/dep${i}-1.0.${i}-py3-none-any.whl` : `npm-cache/content-v2/sha512/${String(i % 97).padStart(2, "0")}/entry${i}`;
    await fsp.mkdir(path.dirname(path.join(root, rel)), { recursive: true });
    await fsp.writeFile(path.join(root, rel), rng.bytes(size));
    bytes += size;
    files++;
  }
  return { bytes, files };
}

function runBaseline(work: string, out: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn("bash", ["-c", 'set -o pipefail; tar -cf - tree deps | gzip -6 > "$1"', "baseline", out], {
      cwd: work,
      stdio: ["ignore", "ignore", "inherit"],
    });
    child.on("error", reject);
    child.on("close", (code) => (code === 0 ? resolve() : reject(new Error(`tar | gzip exited ${code}`))));
  });
}

async function timed<T>(fn: () => Promise<T>): Promise<{ seconds: number; value: T }> {
  const start = performance.now();
  const value = await fn();
  return { seconds: (performance.now() - start) / 1000, value };
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const work = await fsp.mkdtemp(path.join(os.tmpdir(), "zcp-bench-packaging-"));
  // An interrupted run must not leave a few hundred MB behind in the temp directory.
  const interrupted = (): void => {
    fs.rmSync(work, { recursive: true, force: true });
    process.exit(130);
  };
  process.once("SIGINT", interrupted);
  process.once("SIGTERM", interrupted);
  try {
    const tree = path.join(work, "tree");
    const deps = path.join(work, "deps");
    const out = path.join(work, "out");
    await fsp.mkdir(out);
    const generated = await timed(async () => {
      const app = await generateTree(tree, args);
      const dependencies = await generateDependencies(deps, args);
      return { bytes: app.bytes + dependencies.bytes, files: app.files + dependencies.files, app, dependencies };
    });
    const { bytes, files, app, dependencies } = generated.value;
    console.log(
      `tree: ${(bytes / MB).toFixed(1)} MB in ${files} files: app ${(app.bytes / MB).toFixed(1)} MB in ${app.files}, ` +
        `dependencies ${(dependencies.bytes / MB).toFixed(1)} MB in ${dependencies.files} (seed ${args.seed}, generated in ${generated.seconds.toFixed(1)} s)`,
    );

    const build = (concurrency?: number): PackageOptions => ({
      source: { kind: "dir", dir: tree },
      outDir: out,
      reservedTree: { root: ".zcp", dir: deps },
      manifest: { path: ".zcp/manifest.json", render: (digests) => JSON.stringify({ files: digests }) },
      ...(concurrency !== undefined ? { concurrency } : {}),
    });
    const zcpTimes: number[] = [];
    const singleTimes: number[] = [];
    const baseTimes: number[] = [];
    const hashes = new Set<string>();
    let zcpBytes = 0;
    let baseBytes = 0;
    for (let run = 1; run <= args.runs; run++) {
      const z = await timed(() => packageSource(build()));
      zcpTimes.push(z.seconds);
      hashes.add(z.value.sha256);
      zcpBytes = z.value.bytes;
      await fsp.rm(z.value.path);

      const one = await timed(() => packageSource(build(1)));
      singleTimes.push(one.seconds);
      hashes.add(one.value.sha256);
      await fsp.rm(one.value.path);

      const baseOut = path.join(out, "baseline.tar.gz");
      const b = await timed(() => runBaseline(work, baseOut));
      baseTimes.push(b.seconds);
      baseBytes = (await fsp.stat(baseOut)).size;
      await fsp.rm(baseOut);
      console.log(`run ${run}: zcp ${z.seconds.toFixed(2)} s, zcp one gzip thread ${one.seconds.toFixed(2)} s, tar|gzip ${b.seconds.toFixed(2)} s`);
    }

    const zcpRate = bytes / MB / Math.min(...zcpTimes);
    const singleRate = bytes / MB / Math.min(...singleTimes);
    const baseRate = bytes / MB / Math.min(...baseTimes);
    console.log(`zcp build packaging:        ${zcpRate.toFixed(1)} MB/s (best of ${args.runs}), archive ${(zcpBytes / MB).toFixed(1)} MB`);
    console.log(`  with one gzip thread:     ${singleRate.toFixed(1)} MB/s (best of ${args.runs})`);
    console.log(`tar | gzip -6:              ${baseRate.toFixed(1)} MB/s (best of ${args.runs}), archive ${(baseBytes / MB).toFixed(1)} MB`);
    // The tree is a function of the seed, so this digest should match on any machine whose Node
    // bundles the same zlib.
    console.log(`zcp sha256: ${[...hashes].join(", ")} (node ${process.version}, zlib ${process.versions.zlib})`);
    console.log(
      `packaging: ratio ${(zcpRate / baseRate).toFixed(2)} (zcp/baseline throughput), single-thread gzip ratio ${(singleRate / baseRate).toFixed(2)}, reproducible: ${hashes.size === 1 ? "yes" : "no"}`,
    );
  } finally {
    process.off("SIGINT", interrupted);
    process.off("SIGTERM", interrupted);
    await fsp.rm(work, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
