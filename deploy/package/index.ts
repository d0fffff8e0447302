/**
 * Deterministic release packaging: one source tree in, one `.tar.gz` out, whose sha256 depends
 * only on the tree (paths, contents, the executable bit and symlink targets), never on the
 * machine that built it: not on mtimes, owners, umask, readdir order or locale.
 *
 * Split by concern:
 * - `ignore.ts`: which paths are packaged (`.git` and `node_modules` never, `.env` files not by
 *   default, the source's `.zcpignore` in gitignore syntax);
 * - `directory-source.ts`, `git-source.ts`: the two kinds of source and their readers;
 * - `entries.ts`: directories derived from the paths, extra and reserved files merged in, byte
 *   order of the UTF-8 path, symlinks checked to stay inside the tree;
 * - `tar.ts`: the tar stream (tar-stream, normalised headers, whole 10 KiB records);
 * - `gzip.ts`: block-parallel gzip with a fixed header;
 * - `output.ts`: the output directory and the rename to `<sha256>.tar.gz`;
 * - `manifest.ts`: the sha256 of every packaged file, taken while writing, for a manifest that
 *   the archive carries as its last entry.
 *
 * What goes in:
 * - a directory source: every regular file and symlink under it that the filter keeps; any
 *   other kind of file (socket, fifo, device) is refused;
 * - a git source: the blobs of the commit's tree, byte for byte as committed (no clean/smudge
 *   filters, no `export-ignore`), filtered the same way by the committed `.zcpignore`; a
 *   submodule appears as an empty directory, as with `git archive`;
 * - directories only as parents of what is packaged: an empty directory is left out, which a
 *   git source could not carry anyway, so both sources of one tree give the same archive;
 * - symlinks as symlinks, never followed; one whose target is absolute or resolves outside the
 *   tree is refused, since it would reach into the instance beyond the release directory;
 * - optionally a reserved tree (what `zcp build` adds under `.zcp/`) and a manifest file.
 *
 * Nothing is held in memory whole: files stream through the tar writer into gzip into the
 * output file, and the sha256 is computed on the way. The output is written outside the
 * source (the pitfall of archiving into the tree being archived: "file changed as we read it").
 */
import { ConfigError } from "../../shared/errors.js";
import { readDirectorySource } from "./directory-source.js";
import { assembleEntries, withRoomFor, type Entry, type ReservedTree, type Source } from "./entries.js";
import { readGitSource } from "./git-source.js";
import { defaultConcurrency } from "./gzip.js";
import type { ManifestSpec } from "./manifest.js";
import { prepareOutDir, writeArchive } from "./output.js";

export { PACKAGE_MTIME } from "./tar.js";
export { PACKAGE_GZIP_LEVEL, defaultConcurrency } from "./gzip.js";
export { DEFAULT_IGNORES, IGNORE_FILE, SKIPPED_NAMES } from "./ignore.js";
export type { FileDigest, ManifestSpec } from "./manifest.js";

export type PackageSourceSpec =
  /** Every regular file and symlink under `dir` that `.zcpignore` and the defaults keep. */
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
   * A directory added whole (no ignore rules) under `root` in the archive, a path the source
   * may not use itself: what `zcp build` resolved (dependencies) goes there.
   * @default none
   */
  reservedTree?: { root: string; dir: string };
  /**
   * A manifest written into the archive at `path`, as its last entry: `render` gets the sha256
   * of every other file and symlink in the archive, in archive order, and returns the file's
   * content.
   * @default none
   */
  manifest?: ManifestSpec;
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
  let reservedSource: Source | undefined;
  try {
    let reserved: ReservedTree | undefined;
    if (opts.reservedTree) {
      reservedSource = await readDirectorySource(opts.reservedTree.dir, "reservedTree", false);
      reserved = { root: opts.reservedTree.root, entries: underRoot(reservedSource, opts.reservedTree.root) };
    }
    let entries = assembleEntries(source, opts.extraFiles ?? {}, reserved);
    if (opts.manifest) entries = withRoomFor(entries, opts.manifest.path, "manifest");
    const outDir = await prepareOutDir(opts.outDir, source.root);
    const written = await writeArchive(entries, source.content, outDir, concurrency, opts.manifest);
    return {
      ...written,
      files: entries.filter((e) => e.kind !== "dir").length + (opts.manifest ? 1 : 0),
      ...(source.commit !== undefined ? { commit: source.commit } : {}),
    };
  } finally {
    source.content.close();
    reservedSource?.content.close();
  }
}

function readSource(spec: PackageSourceSpec): Promise<Source> {
  return spec.kind === "dir" ? readDirectorySource(spec.dir) : readGitSource(spec.repoDir, spec.commit, spec.subdir);
}

/** A reserved tree's entries moved under `root`, each read through that tree's own reader. */
function underRoot(tree: Source, root: string): Entry[] {
  return tree.entries.map((e): Entry => {
    const at = `${root}/${e.path}`;
    if (e.kind !== "file") return { ...e, path: at };
    if (e.origin.from !== "source") throw new Error(`unexpected origin for ${e.path}`);
    return { ...e, path: at, origin: { from: "tree", reader: tree.content, ref: e.origin.ref } };
  });
}
