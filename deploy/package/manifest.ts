/**
 * The sha256 of every file an archive will hold, computed in a pass of its own before the
 * archive is written, so a manifest listing them can itself go into the archive.
 */
import { createHash } from "node:crypto";
import { fileContent, planReaders, type ContentReader, type Entry } from "./entries.js";

export interface FileDigest {
  path: string;
  /** `file` or `symlink`. */
  kind: "file" | "symlink";
  /** sha256 of the content (of the target path, for a symlink). */
  sha256: string;
  size: number;
  /** 0755 or 0644 for files, 0777 for symlinks: what the archive records. */
  mode: number;
}

export async function digestFiles(entries: readonly Entry[], sourceReader: ContentReader): Promise<FileDigest[]> {
  for (const [reader, files] of planReaders(entries, sourceReader)) reader.plan(files);
  const digests: FileDigest[] = [];
  for (const entry of entries) {
    if (entry.kind === "dir") continue;
    if (entry.kind === "symlink") {
      const target = Buffer.from(entry.target, "utf8");
      digests.push({ path: entry.path, kind: "symlink", sha256: sha256(target), size: target.length, mode: 0o777 });
      continue;
    }
    const hash = createHash("sha256");
    let size = 0;
    for await (const chunk of fileContent(entry, sourceReader)) {
      hash.update(chunk);
      size += chunk.length;
    }
    if (size !== entry.size) throw new Error(`${entry.path}: read ${size} bytes, expected ${entry.size}`);
    digests.push({ path: entry.path, kind: "file", sha256: hash.digest("hex"), size, mode: entry.executable ? 0o755 : 0o644 });
  }
  return digests;
}

function sha256(data: Buffer): string {
  return createHash("sha256").update(data).digest("hex");
}
