/**
 * What checking a release before an image costs: the agent's `prepare-image` (the current
 * release compared with its manifest, every file hashed again) against the deploy of the same
 * release on the same instance, measured in the same run (the deploy includes recording the
 * manifest: a second extraction of the artifact into a private directory and a hash of every
 * file). A real agent and supervisord on a local instance, as the agent tests run them; the
 * identity files it clears live in a scratch directory.
 *
 * For each size N: the example app plus N generated files of 1–8 KB in directories of 50, a
 * fresh instance, one deploy, then prepare-image three times (the best counts). The last line
 * is the one a bench runner reads:
 *
 *   image-prepare: N=2000 prepare X.XXs, deploy Y.YYs, ratio Z.ZZ (prepare/deploy)
 *
 * Usage: node dist/bench/image-prepare.js [--files 200,2000]
 */
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { performance } from "node:perf_hooks";
import { table } from "../deploy/view.js";
import { buildRelease } from "../tests/helpers/releases.js";
import { deployExpecting, FleetHarness, paramsFor } from "../tests/helpers/supervisor.js";

function parseArgs(argv: string[]): number[] {
  let sizes = [200, 2000];
  for (let i = 0; i < argv.length; i += 2) {
    const [flag, value] = [argv[i], argv[i + 1]];
    if (flag !== "--files" || value === undefined) throw new Error(`usage: --files 200,2000 (got ${flag})`);
    sizes = value.split(",").map(Number);
    if (sizes.some((n) => !Number.isInteger(n) || n < 0 || n > 100_000)) throw new Error("--files: whole numbers 0..100000, comma separated");
  }
  return sizes;
}

/** N files of 1–8 KB whose content is a pure function of their index. */
function addFiles(dir: string, n: number): void {
  for (let i = 0; i < n; i++) {
    const sub = path.join(dir, "generated", `d${Math.floor(i / 50)}`);
    if (i % 50 === 0) fs.mkdirSync(sub, { recursive: true });
    const seed = createHash("sha256").update(String(i)).digest();
    const size = 1024 + (seed.readUInt16BE(0) % 7168);
    fs.writeFileSync(path.join(sub, `f${i}.py`), Buffer.alloc(size, seed.toString("hex")));
  }
}

async function main(): Promise<void> {
  const sizes = parseArgs(process.argv.slice(2));
  const fleet = new FleetHarness("zcp-bench-image-prepare");
  const rows: string[][] = [];
  const lines: string[] = [];
  try {
    const imageRoot = path.join(fleet.root, "image-root");
    fs.mkdirSync(path.join(imageRoot, "etc"), { recursive: true, mode: 0o700 });
    for (const n of sizes) {
      const release = buildRelease(path.join(fleet.root, "artifacts"), { version: `1.0.${n}`, prepare: (dir) => addFiles(dir, n) });
      const inst = await fleet.add();
      const params = paramsFor(inst, release);
      let started = performance.now();
      await deployExpecting(inst, params, 0);
      const deployS = (performance.now() - started) / 1000;
      let prepareS = Infinity;
      for (let run = 0; run < 3; run++) {
        fs.writeFileSync(path.join(imageRoot, "etc", "machine-id"), "0123456789abcdef0123456789abcdef\n");
        started = performance.now();
        await deployExpecting(inst, params, 0, { ZCP_ACTION: "prepare-image", ZCP_IMAGE_ROOT: imageRoot });
        prepareS = Math.min(prepareS, (performance.now() - started) / 1000);
      }
      const ratio = prepareS / deployS;
      rows.push([String(n), deployS.toFixed(2), prepareS.toFixed(2), ratio.toFixed(2)]);
      lines.push(`image-prepare: N=${n} prepare ${prepareS.toFixed(2)}s, deploy ${deployS.toFixed(2)}s, ratio ${ratio.toFixed(2)} (prepare/deploy)`);
    }
  } finally {
    await fleet.stopAll();
    fleet.remove();
  }
  console.log(table(["files", "deploy s", "prepare-image s (best of 3)", "prepare/deploy"], rows));
  for (const line of lines) console.log(line);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
