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

/**
 * Where zcp finds its pinned tools (pulumi, the language host, moto, the AWS CLI):
 * `ZCP_TOOLS_DIR`, else `.tools` in zcp's own folder (what `scripts/tools.sh` builds in a
 * checkout). An installed package has no `.tools`; tools on PATH are used then.
 */
export function toolsDir(): string {
  return path.resolve(process.env.ZCP_TOOLS_DIR ?? path.join(findRepoRoot(), ".tools"));
}

/**
 * The node_modules folder that holds zcp's dependencies: zcp's own in a checkout, the
 * project's (hoisted) one when zcp is installed as a package. The engine loads dynamic
 * providers from the program folder's node_modules, so this is what it is pointed at.
 */
export function dependenciesDir(): string {
  const pulumiPkg = require.resolve("@pulumi/pulumi/package.json", { paths: [findRepoRoot()] });
  return path.dirname(path.dirname(path.dirname(pulumiPkg)));
}
