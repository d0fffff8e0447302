/**
 * The wheels of an unchanged requirements.txt, kept between builds on the build machine.
 *
 * `pip download` costs about a second even when every wheel sits in the source (pip starts,
 * resolves, checks hashes), and a release that builds pays it every time although its lockfile
 * rarely changes. A build may reuse what an earlier build resolved, on conditions that make the
 * result the bytes pip would have written:
 *
 * - the entry is keyed by everything pip's choice depends on here: the lockfile's text, the
 *   interpreter (path, version, platform, implementation), pip's version, the wheel target,
 *   and the name and sha256 of every file in the lockfile's local `--find-links` directories
 *   (a changed vendored wheel is a miss, so pip refuses it as before);
 * - every cached wheel is hashed again when it is reused and must match both the digest the
 *   entry recorded and a `--hash=sha256:` of the lockfile (what `--require-hashes` checks); the
 *   entry holds nothing else. Anything that does not match removes the entry and pip runs.
 *
 * An entry is written to a temporary folder and renamed into place, so a reader never sees
 * half an entry. The folder is the runner's own (mode 0700) and keeps the newest
 * MAX_ENTRIES entries.
 */
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as fsp from "node:fs/promises";
import * as path from "node:path";

export interface WheelCacheKeyParts {
  lockText: string;
  /** Interpreter and pip facts, e.g. version, platform, implementation. */
  builder: Record<string, string>;
  target: { platform?: string; pythonVersion?: string };
  /** The source directory relative --find-links are resolved from. */
  sourceDir: string;
}

export interface CachedWheel {
  file: string;
  sha256: string;
}

const INDEX = "wheels.json";
/** Entries kept; older ones (by when they were written) are removed. */
export const MAX_ENTRIES = 8;

function sha256(data: string | Buffer): string {
  return createHash("sha256").update(data).digest("hex");
}

/** The sha256 digests a requirements.txt allows (`--hash=sha256:…` / `--hash sha256:…`). */
export function lockedSha256s(lockText: string): Set<string> {
  return new Set([...lockText.matchAll(/--hash[=\s]+sha256:([0-9a-f]{64})\b/g)].map((m) => m[1] ?? ""));
}

/** Local directories named by --find-links / -f (URLs other than file:// are left out). */
function localFindLinks(lockText: string, sourceDir: string): string[] {
  const dirs: string[] = [];
  for (const m of lockText.matchAll(/(?:^|\s)(?:--find-links|-f)(?:=|\s+)(\S+)/g)) {
    const target = m[1] ?? "";
    if (/^[a-z][a-z0-9+.-]*:\/\//i.test(target) && !target.startsWith("file://")) continue;
    dirs.push(path.resolve(sourceDir, target.replace(/^file:\/\//, "")));
  }
  return dirs;
}

/** Name, type and (for a file) sha256 of each entry of `dir`, in name order. */
async function listing(dir: string): Promise<string[]> {
  let names: string[];
  try {
    names = (await fsp.readdir(dir)).sort();
  } catch {
    return ["unreadable"];
  }
  const out: string[] = [];
  for (const name of names) {
    const file = path.join(dir, name);
    const st = await fsp.lstat(file).catch(() => undefined);
    if (!st) out.push(`${name}\0gone`);
    else if (st.isFile()) out.push(`${name}\0file\0${sha256(await fsp.readFile(file))}`);
    else out.push(`${name}\0other\0${st.mode}`);
  }
  return out;
}

/** The entry's name: a digest over everything pip's choice of wheels depends on. */
export async function wheelCacheKey(parts: WheelCacheKeyParts): Promise<string> {
  // Named relative to the source, so a git source materialised afresh for each build hits too.
  const findLinks: Record<string, string[]> = {};
  for (const dir of localFindLinks(parts.lockText, parts.sourceDir)) findLinks[path.relative(parts.sourceDir, dir) || "."] = await listing(dir);
  const builder = Object.fromEntries(Object.entries(parts.builder).sort(([a], [b]) => a.localeCompare(b)));
  return sha256(JSON.stringify({ format: 1, lock: sha256(parts.lockText), builder, target: parts.target, findLinks }));
}

/**
 * Copies a cached entry's wheels into `dest` and returns them, or undefined (a miss, or an
 * entry that failed its checks, which is then removed).
 */
export async function restoreWheels(cacheDir: string, key: string, lockText: string, dest: string): Promise<CachedWheel[] | undefined> {
  const entry = path.join(cacheDir, key);
  let index: CachedWheel[];
  try {
    index = JSON.parse(await fsp.readFile(path.join(entry, INDEX), "utf8")) as CachedWheel[];
  } catch {
    return undefined;
  }
  const allowed = lockedSha256s(lockText);
  try {
    if (!Array.isArray(index)) throw new Error("unreadable index");
    const names = (await fsp.readdir(entry)).filter((n) => n !== INDEX).sort();
    const listed = index.map((w) => w.file).sort();
    if (JSON.stringify(names) !== JSON.stringify(listed)) throw new Error("entry holds other files than its index");
    const wheels: { file: string; sha256: string; bytes: Buffer }[] = [];
    for (const w of index) {
      if (typeof w.file !== "string" || path.basename(w.file) !== w.file || !w.file.endsWith(".whl")) throw new Error("bad file name");
      const file = path.join(entry, w.file);
      if (!(await fsp.lstat(file)).isFile()) throw new Error(`${w.file} is not a regular file`);
      const bytes = await fsp.readFile(file);
      const digest = sha256(bytes);
      if (digest !== w.sha256 || !allowed.has(digest)) throw new Error(`${w.file} does not match the lockfile`);
      wheels.push({ file: w.file, sha256: digest, bytes });
    }
    await fsp.mkdir(dest, { recursive: true });
    try {
      // Written like pip writes a download: a new file with the default mode for the umask.
      for (const w of wheels) await fsp.writeFile(path.join(dest, w.file), w.bytes, { flag: "wx" });
    } catch (err) {
      for (const w of wheels) await fsp.rm(path.join(dest, w.file), { force: true });
      throw err;
    }
    return wheels.map(({ file, sha256: digest }) => ({ file, sha256: digest })).sort((a, b) => (a.file < b.file ? -1 : a.file > b.file ? 1 : 0));
  } catch {
    await fsp.rm(entry, { recursive: true, force: true }).catch(() => undefined);
    return undefined;
  }
}

/** Keeps `wheels` (just resolved by pip into `from`) under `key`; best effort. */
export async function storeWheels(cacheDir: string, key: string, lockText: string, from: string, wheels: readonly CachedWheel[]): Promise<void> {
  const allowed = lockedSha256s(lockText);
  // Only what the lockfile pins by sha256 can be checked when it is reused.
  if (wheels.some((w) => !allowed.has(w.sha256) || !w.file.endsWith(".whl"))) return;
  try {
    await fsp.mkdir(cacheDir, { recursive: true, mode: 0o700 });
    const entry = path.join(cacheDir, key);
    if (fs.existsSync(entry)) return;
    const tmp = await fsp.mkdtemp(path.join(cacheDir, `.${key.slice(0, 12)}-`));
    try {
      for (const w of wheels) await fsp.copyFile(path.join(from, w.file), path.join(tmp, w.file));
      await fsp.writeFile(path.join(tmp, INDEX), JSON.stringify(wheels));
      await fsp.rename(tmp, entry);
    } catch {
      await fsp.rm(tmp, { recursive: true, force: true });
    }
    await prune(cacheDir);
  } catch {
    // a cache is best effort
  }
}

async function prune(cacheDir: string): Promise<void> {
  const entries: { dir: string; mtimeMs: number }[] = [];
  for (const name of await fsp.readdir(cacheDir)) {
    if (name.startsWith(".")) continue;
    const dir = path.join(cacheDir, name);
    const st = await fsp.stat(path.join(dir, INDEX)).catch(() => undefined);
    entries.push({ dir, mtimeMs: st?.mtimeMs ?? 0 });
  }
  entries.sort((a, b) => b.mtimeMs - a.mtimeMs);
  for (const old of entries.slice(MAX_ENTRIES)) await fsp.rm(old.dir, { recursive: true, force: true });
}
