/**
 * Where the archive goes: a directory outside the source, a temporary name while it is
 * written, renamed to `<sha256>.tar.gz` once complete.
 */
import { randomBytes } from "node:crypto";
import * as fsp from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import { ConfigError, StepError, describeError } from "../../shared/errors.js";
import { planReaders, type ContentReader, type Entry } from "./entries.js";
import { BlockGzip, fileSink } from "./gzip.js";
import type { ManifestSpec } from "./manifest.js";
import { tarBlocks } from "./tar.js";

export async function prepareOutDir(outDir: string | undefined, sourceRoot: string | undefined): Promise<string> {
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

export async function writeArchive(
  entries: readonly Entry[],
  content: ContentReader,
  outDir: string,
  concurrency: number,
  manifest?: ManifestSpec,
): Promise<{ path: string; sha256: string; bytes: number }> {
  for (const [reader, files] of planReaders(entries, content)) reader.plan(files);
  const partial = path.join(outDir, `.zcp-package-${randomBytes(6).toString("hex")}.partial`);
  let handle: fsp.FileHandle | undefined;
  try {
    handle = await fsp.open(partial, "wx");
    const gzip = new BlockGzip(fileSink(handle), concurrency);
    for await (const block of tarBlocks(entries, content, manifest)) await gzip.push(block);
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
