/**
 * The sha256 of every file of an archive, taken while the archive is written (one read of each
 * file), for a manifest that the archive then carries as its last entry.
 */
import { createHash, type Hash } from "node:crypto";
import type { Entry } from "./entries.js";

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

/** A manifest written as the archive's last entry, at `path`, from the digests of the rest. */
export interface ManifestSpec {
  path: string;
  render: (files: readonly FileDigest[]) => string;
}

export class DigestCollector {
  readonly digests: FileDigest[] = [];

  /** Starts the digest of one entry; returns where its content goes (files only). */
  begin(entry: Entry): { update(chunk: Buffer): void; end(): void } | undefined {
    if (entry.kind === "dir") return undefined;
    if (entry.kind === "symlink") {
      const target = Buffer.from(entry.target, "utf8");
      this.digests.push({ path: entry.path, kind: "symlink", sha256: hex(createHash("sha256").update(target)), size: target.length, mode: 0o777 });
      return undefined;
    }
    const hash = createHash("sha256");
    let size = 0;
    return {
      update: (chunk) => {
        hash.update(chunk);
        size += chunk.length;
      },
      end: () => {
        this.digests.push({ path: entry.path, kind: "file", sha256: hex(hash), size, mode: entry.executable ? 0o755 : 0o644 });
      },
    };
  }
}

function hex(hash: Hash): string {
  return hash.digest("hex");
}
