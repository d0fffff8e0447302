/**
 * What an archive holds, before any byte is written: the entries of a source, the directories
 * derived from them, extra files merged in, sorted in byte order of their UTF-8 path, and every
 * symlink checked to stay inside the tree.
 */
import { ConfigError } from "../../shared/errors.js";

export type Entry =
  | { kind: "dir"; path: string }
  | { kind: "symlink"; path: string; target: string }
  | { kind: "file"; path: string; size: number; executable: boolean; origin: FileOrigin };

export type FileEntry = Extract<Entry, { kind: "file" }>;

/**
 * Where a file's bytes come from: the source (by its reader), another directory tree added to
 * the archive (by that tree's reader), or inline (an extra file).
 */
export type FileOrigin =
  | { from: "source"; ref: string }
  | { from: "tree"; reader: ContentReader; ref: string }
  | { from: "inline"; data: Buffer };

/** Reads file contents, in the order the archive asks for them. */
export interface ContentReader {
  /**
   * Starts reading ahead: the files that will be asked for, in order, each with its reference
   * in this reader. Called again after a complete pass, it starts another.
   */
  plan(files: readonly PlannedFile[]): void;
  /** The bytes of the next planned file, in chunks summing to exactly its size. */
  read(file: FileEntry, ref: string): AsyncIterable<Buffer>;
  close(): void;
}

export interface PlannedFile {
  file: FileEntry;
  ref: string;
}

/** The files of `entries` each reader will be asked for, in archive order. */
export function planReaders(entries: readonly Entry[], sourceReader: ContentReader): Map<ContentReader, PlannedFile[]> {
  const plans = new Map<ContentReader, PlannedFile[]>([[sourceReader, []]]);
  for (const file of entries) {
    if (file.kind !== "file" || file.origin.from === "inline") continue;
    const reader = file.origin.from === "tree" ? file.origin.reader : sourceReader;
    const list = plans.get(reader) ?? [];
    list.push({ file, ref: file.origin.ref });
    plans.set(reader, list);
  }
  return plans;
}

/** The bytes of one file, from wherever its origin says. */
export function fileContent(file: FileEntry, sourceReader: ContentReader): AsyncIterable<Buffer> | Buffer[] {
  const origin = file.origin;
  if (origin.from === "inline") return [origin.data];
  return (origin.from === "tree" ? origin.reader : sourceReader).read(file, origin.ref);
}

export interface Source {
  entries: Entry[];
  content: ContentReader;
  /** The field named in errors about this source. */
  field: string;
  /** Real path of a directory source, which the output must stay out of. */
  root?: string;
  commit?: string;
}

/** Entries added under one directory of the archive that the source itself may not use. */
export interface ReservedTree {
  /** Clean relative path of the directory, e.g. `.zcp`. */
  root: string;
  /** Entries whose paths all lie under `root`. */
  entries: readonly Entry[];
}

/** Adds the directories, merges the extra and reserved files in, sorts, and checks every symlink. */
export function assembleEntries(source: Source, extraFiles: Record<string, string>, reserved?: ReservedTree): Entry[] {
  const byPath = new Map<string, Entry>();
  for (const entry of source.entries) byPath.set(entry.path, entry);
  // Directories are derived from the paths they hold, so a directory source and a git source of
  // the same tree give the same archive (git cannot record an empty directory).
  for (const entry of source.entries) addParents(byPath, entry.path, source.field);
  // What the build adds (dependencies resolved at build time, the manifest) lives under a
  // directory of its own, which the source must not hold: an instance must never mistake a
  // source file for something the build verified.
  if (reserved) {
    const clash = source.entries.find((e) => e.path === reserved.root || e.path.startsWith(`${reserved.root}/`));
    if (clash) throw new ConfigError(source.field, `"${clash.path}": the directory "${reserved.root}" is reserved for what zcp build adds; remove it from the source or list it in .zcpignore`);
    for (const entry of reserved.entries) {
      if (!entry.path.startsWith(`${reserved.root}/`)) throw new Error(`${entry.path} is outside ${reserved.root}`);
      byPath.set(entry.path, entry);
      addParents(byPath, entry.path, source.field);
    }
  }

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

  return sortEntries(byPath.values());
}

function sortEntries(entries: Iterable<Entry>): Entry[] {
  const keyed = [...entries].map((entry) => ({ entry, key: Buffer.from(entry.path, "utf8") }));
  keyed.sort((a, b) => Buffer.compare(a.key, b.key));
  return keyed.map((k) => k.entry);
}

/**
 * Makes room for a file written after the sorted entries (the manifest): its directories are
 * added in order, and its own path must be free.
 */
export function withRoomFor(entries: readonly Entry[], filePath: string, field: string): Entry[] {
  if (!isCleanRelativePath(filePath)) throw new ConfigError(field, `"${filePath}" must be a relative path without '.', '..' or empty segments`);
  const byPath = new Map(entries.map((e) => [e.path, e]));
  if (byPath.has(filePath)) throw new ConfigError(field, `"${filePath}" is already in the archive`);
  const placeholder: Entry = { kind: "file", path: filePath, size: 0, executable: false, origin: { from: "inline", data: Buffer.alloc(0) } };
  byPath.set(filePath, placeholder);
  addParents(byPath, filePath, field);
  byPath.delete(filePath);
  return sortEntries(byPath.values());
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

export function describeKind(entry: Entry): string {
  return entry.kind === "dir" ? "directory" : entry.kind === "symlink" ? "symlink" : "file";
}

export function isCleanRelativePath(p: string): boolean {
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

