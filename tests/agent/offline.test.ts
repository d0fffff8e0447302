/**
 * Instances install dependencies offline only. The agent runs in a network namespace made for
 * the test (`unshare --net`; as a non-root user inside a user namespace too), where the only
 * interface is loopback: a package registry cannot be reached from there, which the test checks
 * first, so a deploy that succeeds there installed everything from the artifact.
 *
 * As a non-root user the namespace keeps the user's own uid (`--map-current-user`) and the
 * capabilities it holds there (`--keep-caps`, enough to bring loopback up), and the app runs as
 * that user, as on any non-root local fleet. Mapping the user to root instead (`--map-root-user`)
 * made the app user uid 0, which the agent refuses: both deploys were rejected (exit 2,
 * "ZCP_APP_USER: root has uid 0") on every non-root run.
 */
import { expect } from "chai";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { buildArtifact, type BuildResult } from "../../deploy/build/index.js";
import { exampleAppDir, repoRoot } from "../../deploy/local/fleet.js";
import type { OfflineReport, OfflineSpec } from "../fixtures/agent/offline-run.js";
import { PAD_PACKAGE, seedNodeDependency } from "../fixtures/build/node.js";
import { buildRelease, type BuiltRelease } from "../helpers/releases.js";
import { isRoot, makeTempRoot, testAppUser } from "../helpers/supervisor.js";

/** A pinned, hashed requirement that no artifact carries: installing it needs an index. */
const NEEDS_A_REGISTRY = "six==1.16.0 --hash=sha256:1e61c37477a1626458e36f7b1d82aa5c9b094fa4802892072e49de9c60c4c926\n";

function withEnv<T>(vars: Record<string, string>, fn: () => Promise<T>): Promise<T> {
  const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
  Object.assign(process.env, vars);
  return fn().finally(() => {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  });
}

describe("zcp-agent: offline install in a network namespace with no network", function () {
  this.timeout(600000);
  let root: string;
  let built: BuildResult;
  let needsRegistry: BuiltRelease;
  let report: OfflineReport;

  before(async function () {
    root = makeTempRoot("zcp-agent-offline");
    const seeded = seedNodeDependency(path.join(root, "seed"));
    // The app with a Node dependency next to its Python one; vendor/ stays out of the
    // artifact, so the wheel can only come from what the build put under .zcp/.
    const source = path.join(root, "source");
    fs.cpSync(exampleAppDir(), source, { recursive: true, filter: (p) => !/(^|\/)(__pycache__|\.venv|node_modules)(\/|$)/.test(p) });
    for (const [name, text] of Object.entries(seeded.files)) fs.writeFileSync(path.join(source, name), text);
    fs.writeFileSync(path.join(source, ".zcpignore"), "vendor/\n");
    const out = path.join(root, "artifacts");
    // The build's npm finds the tarball in its cache; offline proves it needs nothing else.
    built = await withEnv({ npm_config_cache: seeded.cache, npm_config_offline: "true" }, () =>
      buildArtifact({ version: "1.0.0", source: { kind: "dir", dir: source }, outDir: out }),
    );
    fs.chmodSync(built.path, 0o644);
    needsRegistry = buildRelease(out, { version: "2.0.0", extraFiles: { "requirements.txt": NEEDS_A_REGISTRY } });

    const spec: OfflineSpec = {
      root: path.join(root, "fleet"),
      // Never root: the agent refuses an app user with uid 0.
      appUser: isRoot() ? testAppUser() : os.userInfo().username,
      port: 18_980,
      deploys: [
        { version: "1.0.0", artifact: built.path, sha256: built.sha256 },
        { version: "2.0.0", artifact: needsRegistry.path, sha256: needsRegistry.sha256 },
      ],
      nodeCheck: `process.stdout.write(require("${PAD_PACKAGE}")("x", 6))`,
    };
    fs.mkdirSync(spec.root, { recursive: true });
    fs.chmodSync(spec.root, 0o755);
    const fixture = path.join(repoRoot(), "dist", "tests", "fixtures", "agent", "offline-run.js");
    const unshare = isRoot() ? ["--net"] : ["--user", "--map-current-user", "--keep-caps", "--net"];
    const run = spawnSync("unshare", [...unshare, "--", process.execPath, fixture], {
      env: { ...process.env, ZCP_OFFLINE_SPEC: JSON.stringify(spec) },
      encoding: "utf8",
      timeout: 540000,
    });
    if (run.status !== 0) {
      throw new Error(`the run in a network namespace failed (unshare ${unshare.join(" ")}; exit ${run.status}): ${run.error?.message ?? ""}\n${run.stderr}`);
    }
    report = JSON.parse(run.stdout.trim().split("\n").at(-1) ?? "{}") as OfflineReport;
  });

  after(() => {
    if (root) fs.rmSync(root, { recursive: true, force: true });
  });

  it("has only loopback, and neither pip nor npm can reach a registry from there", function () {
    const interfaces = report.interfaces.trim().split("\n").map((l) => l.split(":")[1]?.trim());
    expect(interfaces).to.deep.equal(["lo"]);
    expect(report.probes.pip.exitCode, report.probes.pip.output).to.not.equal(0);
    expect(report.probes.npm.exitCode, report.probes.npm.output).to.not.equal(0);
  });

  it("installs the built artifact's wheels and npm packages there, and the app runs with them", function () {
    const [first] = report.deploys;
    expect(first?.exitCode, `${String(first?.result?.message)}\n${first?.detail ?? ""}`).to.equal(0);
    expect(first?.result).to.include({ status: "deployed", version: "1.0.0", deps: "installed" });
    expect(first?.served).to.include({ version: "1.0.0", dependency: "1.0.0" });
    expect(first?.nodeCheck?.exitCode, first?.nodeCheck?.output).to.equal(0);
    expect(first?.nodeCheck?.output).to.equal("*****x");
    // The wheel came from the build, not from the source's vendor/ directory.
    const files = built.manifest.files.map((f) => f.path);
    expect(files).to.include(".zcp/wheels/zcp_example_dep-1.0.0-py3-none-any.whl");
    expect(files.filter((f) => f.startsWith("vendor/"))).to.deep.equal([]);
  });

  it("fails a lockfile that needs a package the artifact does not carry, before switching, instead of downloading it", function () {
    const second = report.deploys[1];
    expect(second?.exitCode).to.equal(1);
    // The install fails before the switch: the running release was never touched.
    expect(second?.result).to.include({ status: "failed", version: "2.0.0", previous: "1.0.0", current: "1.0.0" });
    expect(String(second?.result?.message)).to.match(/installing dependencies failed; 1\.0\.0 is still current/);
    expect(second?.detail).to.match(/No matching distribution found for six==1\.16\.0|Could not find a version that satisfies the requirement six/);
  });
});
