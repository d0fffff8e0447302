/**
 * Which paths of a source are packaged. Three layers, in order:
 *
 * 1. Never packaged, whatever `.zcpignore` says: anything named `.git` or `node_modules` at any
 *    depth (repository metadata, and dependencies that belong to the build, not the source).
 * 2. Skipped by default: `.env` and `.env.*` files at any depth, which by convention hold local
 *    secrets. A `.zcpignore` line such as `!.env.example` puts one back.
 * 3. The source's own `.zcpignore` at its root, in gitignore syntax (read by the `ignore`
 *    package, which implements the rules of gitignore(5): `#` comments, `!` negation, a
 *    trailing `/` for directories only, a leading `/` anchoring to the root, `**`).
 *
 * A directory source and a git source of the same tree apply the same rules to the same paths,
 * so both give the same archive.
 */
import ignore, { type Ignore } from "ignore";

/** Names never packaged, at any depth. */
export const SKIPPED_NAMES: ReadonlySet<string> = new Set([".git", "node_modules"]);
/** Patterns skipped unless the source's `.zcpignore` re-includes them. */
export const DEFAULT_IGNORES: readonly string[] = [".env", ".env.*"];
/** The ignore file, read from the root of the source. */
export const IGNORE_FILE = ".zcpignore";

export class PathFilter {
  private readonly rules: Ignore;

  constructor(ignoreFileText: string | undefined) {
    this.rules = ignore().add([...DEFAULT_IGNORES]);
    if (ignoreFileText !== undefined) this.rules.add(ignoreFileText);
  }

  /** Whether a directory's contents are walked at all. */
  includesDir(rel: string): boolean {
    const name = rel.slice(rel.lastIndexOf("/") + 1);
    return !SKIPPED_NAMES.has(name) && !this.rules.ignores(`${rel}/`);
  }

  /** Whether a file or symlink is packaged (its directories are checked too). */
  includesFile(rel: string): boolean {
    if (rel.split("/").some((segment) => SKIPPED_NAMES.has(segment))) return false;
    return !this.rules.ignores(rel);
  }
}
