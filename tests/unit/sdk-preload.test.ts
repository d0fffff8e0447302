/**
 * deploy/sdk-preload.ts: the modules the Pulumi SDK loads for its closure serializer wait
 * for first use, and still work when used. Each case runs in a fresh Node.js process (the
 * module cache is per process), as the runner and the engine's provider host start.
 */
import { expect } from "chai";
import { execFileSync } from "node:child_process";
import * as path from "node:path";
import { sdkPreloadEnv } from "../../deploy/runner.js";

const DIST = path.join(__dirname, "..", "..");
const PRELOAD = path.join(DIST, "deploy", "sdk-preload.js");

/** Runs `script` in a new Node.js process from the compiled tree and returns its JSON output. */
function inFreshNode(script: string, nodeOptions?: string): unknown {
  const env = { ...process.env, NODE_OPTIONS: nodeOptions ?? "" };
  return JSON.parse(execFileSync(process.execPath, ["-e", script], { cwd: DIST, env, encoding: "utf8" }));
}

const LOAD_RELEASE_CODE = `
  require("@pulumi/pulumi");
  require("@pulumi/pulumi/automation");
  require("./deploy/providers/fleet-deployment.js");
  require("./deploy/program.js");`;

describe("SDK preload (fresh Node.js processes)", function () {
  this.timeout(60_000);

  it("the runner's modules and the SDK load without TypeScript or Arborist", function () {
    const got = inFreshNode(`
      const preload = require("./deploy/sdk-preload.js");
      ${LOAD_RELEASE_CODE}
      const loaded = Object.keys(require.cache);
      console.log(JSON.stringify({
        deferred: preload.stillDeferred().map((f) => require("path").basename(require("path").dirname(f)) + "/" + require("path").basename(f)),
        // The entry file itself is the stand-in's cache entry; Arborist's own modules are not.
        arboristInternals: loaded.filter((f) => f.includes("/@npmcli/arborist/lib/") && !f.endsWith("/lib/index.js")).length,
      }));`) as { deferred: string[]; arboristInternals: number };
    expect(got.deferred.sort()).to.deep.equal(["lib/index.js", "lib/typescript.js"]);
    expect(got.arboristInternals).to.equal(0);
  });

  it("without the preload the same code loads both (what the preload spares)", function () {
    const got = inFreshNode(`
      ${LOAD_RELEASE_CODE}
      const loaded = Object.keys(require.cache);
      console.log(JSON.stringify({
        typescript: loaded.some((f) => f.endsWith("/typescript/lib/typescript.js")),
        arboristInternals: loaded.filter((f) => f.includes("/@npmcli/arborist/lib/")).length,
      }));`) as { typescript: boolean; arboristInternals: number };
    expect(got.typescript).to.equal(true);
    expect(got.arboristInternals).to.be.above(10);
  });

  it("through NODE_OPTIONS, as the engine starts the provider host; code that uses the modules still gets them", function () {
    const opts = sdkPreloadEnv("--max-old-space-size=2048").NODE_OPTIONS;
    expect(opts).to.equal(`--max-old-space-size=2048 --require "${PRELOAD}"`);
    const got = inFreshNode(
      `
      const preload = require("./deploy/sdk-preload.js");
      const pulumi = require("@pulumi/pulumi");
      const before = preload.stillDeferred().length;
      const sc = require("@pulumi/pulumi/runtime/closure/serializeClosure");
      Promise.all([
        sc.serializeFunction(() => { const p = require("path"); return () => p.join("a", "b"); }),
        pulumi.runtime.computeCodePaths(),
      ]).then(([fn, paths]) => console.log(JSON.stringify({
        before,
        after: preload.stillDeferred().length,
        serialized: fn.text.includes("exports.handler"),
        codePaths: paths.size,
      })));`,
      opts,
    ) as { before: number; after: number; serialized: boolean; codePaths: number };
    expect(got.before, "deferred by the --require of NODE_OPTIONS").to.equal(2);
    expect(got.after, "both loaded on first use").to.equal(0);
    expect(got.serialized).to.equal(true);
    expect(got.codePaths).to.be.above(0);
  });

  it("keeps the caller's NODE_OPTIONS and adds nothing it cannot quote", function () {
    expect(sdkPreloadEnv(undefined).NODE_OPTIONS).to.equal(`--require "${PRELOAD}"`);
    expect(sdkPreloadEnv("--trace-warnings").NODE_OPTIONS).to.match(/^--trace-warnings --require "/);
  });
});
