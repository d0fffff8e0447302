import * as fs from "node:fs";
import * as path from "node:path";

/**
 * The folder zcp is installed in (the one with its package.json). Compiled code runs from
 * `dist/`, so walk up from here rather than assuming a depth.
 */
export function findRepoRoot(from: string = __dirname): string {
  let dir = from;
  for (;;) {
    const pkg = path.join(dir, "package.json");
    if (fs.existsSync(pkg) && path.basename(dir) !== "dist") {
      try {
        if ((JSON.parse(fs.readFileSync(pkg, "utf8")) as { name?: string }).name === "zero-credential-pipeline") return dir;
      } catch {
        // keep walking
      }
    }
    const up = path.dirname(dir);
    if (up === dir) throw new Error(`zcp's package.json not found above ${from}`);
    dir = up;
  }
}
