/**
 * The deploy agent against real processes: a supervisord per instance runs the example app,
 * artifacts come from the emulator's S3 or from files.
 */
import { expect } from "chai";
import * as fs from "node:fs";
import * as path from "node:path";
import { execFileSync, spawn } from "node:child_process";
import { agentInstanceEnv, agentScriptPath, readVersion, repoRoot, servicePid, type LocalInstance } from "../../deploy/local/fleet.js";
import { agentEnvironment, parseAgentResult } from "../../deploy/transport.js";
import { sharedEmulator, type Emulator } from "../helpers/emulator.js";
import { buildRelease, type BuiltRelease } from "../helpers/releases.js";
import {
  currentTarget,
  deployExpecting,
  deployLog,
  fleetForSuite,
  paramsFor,
  pathsNotOwnedBy,
  releasesOn,
  uidOf,
  uploadArtifact,
} from "../helpers/supervisor.js";

const FIXTURES = path.resolve(repoRoot(), "tests", "fixtures", "agent");

function commandExists(cmd: string): boolean {
  try {
    execFileSync(cmd, ["--version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

describe("zcp-agent: deploying", function () {
  this.timeout(120000);
  let emu: Emulator;
  const fleet = fleetForSuite("zcp-agent-deploy");
  let v1: BuiltRelease;
  let v2: BuiltRelease;
  let v3: BuiltRelease;
  let v4: BuiltRelease;
  let newDep: BuiltRelease;

  before(async () => {
    emu = await sharedEmulator();
    const out = path.join(fleet.root, "artifacts");
    v1 = buildRelease(out, { version: "1.0.0" });
    v2 = buildRelease(out, { version: "2.0.0" });
    v3 = buildRelease(out, { version: "3.0.0" });
    v4 = buildRelease(out, { version: "4.0.0" });
    newDep = buildRelease(out, { version: "5.0.0", dependencyVersion: "1.1.0" });
  });

  after(async () => {
    await emu?.stop();
  });

  async function deployed(inst: LocalInstance, release: BuiltRelease, keepReleases = 3) {
    const run = await deployExpecting(inst, paramsFor(inst, release, { keepReleases }), 0);
    expect(run.result?.status).to.equal("deployed");
    return run;
  }

  it("first deploy from S3: verifies, installs, switches and starts the app", async () => {
    const inst = await fleet.add();
    const uri = await uploadArtifact(emu.env, "zcp-artifacts", "releases/zcp-example/1.0.0.tar.gz", v1.path);

    const run = await deployExpecting(inst, paramsFor(inst, v1, { artifact: uri }), 0, emu.env);

    expect(run.result).to.include({ status: "deployed", version: "1.0.0", previous: null, deps: "installed" });
    expect(run.result?.duration_ms).to.be.a("number");
    expect(run.stdout.trimEnd().split("\n").at(-1)).to.match(/^\{"status":"deployed"/);
    expect(currentTarget(inst)).to.equal("releases/1.0.0");
    const live = await readVersion(inst);
    expect(live).to.include({ version: "1.0.0", dependency: "1.0.0" });
    expect(deployLog(inst).map((l) => l.status)).to.deep.equal(["deployed"]);
  });

  it("upgrade: the new version answers, the previous one is reported, dependencies are reused", async () => {
    const inst = await fleet.add();
    await deployed(inst, v1);
    const before = await readVersion(inst);

    const run = await deployed(inst, v2);

    expect(run.result).to.include({ version: "2.0.0", previous: "1.0.0", deps: "reused" });
    // The previous release's verified checksum, so a runner can roll back to it from the
    // instance's own copy.
    expect(run.result?.previous_sha256).to.equal(v1.sha256);
    const after = await readVersion(inst);
    expect(after?.version).to.equal("2.0.0");
    expect(after?.pid).to.not.equal(before?.pid);
    expect(currentTarget(inst)).to.equal("releases/2.0.0");
    expect(releasesOn(inst)).to.deep.equal(["1.0.0", "2.0.0"]);
  });

  it("the same version again is unchanged and the app is not restarted", async () => {
    const inst = await fleet.add();
    await deployed(inst, v1);
    const pid = await servicePid(inst);
    expect(pid).to.be.a("number");

    const run = await deployExpecting(inst, paramsFor(inst, v1), 0);

    expect(run.result).to.include({ status: "unchanged", version: "1.0.0" });
    expect(await servicePid(inst)).to.equal(pid);
    expect((await readVersion(inst))?.pid).to.equal(pid);
    expect(deployLog(inst).map((l) => l.status)).to.deep.equal(["deployed", "unchanged"]);
  });

  it("installs dependencies only when the lockfile changed", async () => {
    const inst = await fleet.add();
    const venvs = path.join(inst.appDir, "shared", "venvs");
    expect((await deployed(inst, v1)).result?.deps).to.equal("installed");
    const [firstEnv] = fs.readdirSync(venvs);
    const firstEnvInode = fs.statSync(path.join(venvs, String(firstEnv))).ino;

    // Same requirements.txt: the environment of the current release is reused as is.
    expect((await deployed(inst, v2)).result?.deps).to.equal("reused");
    expect(fs.readdirSync(venvs)).to.deep.equal([firstEnv]);
    expect(fs.statSync(path.join(venvs, String(firstEnv))).ino).to.equal(firstEnvInode);
    expect(fs.realpathSync(path.join(inst.appDir, "current", ".venv"))).to.equal(path.join(venvs, String(firstEnv)));

    // A new pin: a new environment, and the app imports the new dependency version.
    expect((await deployed(inst, newDep)).result?.deps).to.equal("installed");
    expect(fs.readdirSync(venvs)).to.have.length(2);
    expect(await readVersion(inst)).to.include({ version: "5.0.0", dependency: "1.1.0" });
  });

  it("a release with a package-lock.json gets node_modules from npm ci, reused while the lockfile stays", async function () {
    // npm ships with the Node.js the tools script provides: its absence is a failure, not a skip.
    expect(commandExists("npm"), "npm on PATH").to.equal(true);
    const nodeLock = path.join(FIXTURES, "node");
    const files = {
      "package.json": fs.readFileSync(path.join(nodeLock, "package.json"), "utf8"),
      "package-lock.json": fs.readFileSync(path.join(nodeLock, "package-lock.json"), "utf8"),
    };
    const out = path.join(fleet.root, "artifacts");
    const n1 = buildRelease(out, { version: "6.0.0", extraFiles: files });
    const n2 = buildRelease(out, { version: "6.1.0", extraFiles: files });
    const inst = await fleet.add();

    expect((await deployed(inst, n1)).result?.deps).to.equal("installed");
    const modules = fs.realpathSync(path.join(inst.appDir, "current", "node_modules"));
    expect(path.relative(inst.appDir, modules)).to.match(/^shared\/node\/[0-9a-f]{16}\/node_modules$/);

    expect((await deployed(inst, n2)).result?.deps).to.equal("reused");
    expect(fs.realpathSync(path.join(inst.appDir, "current", "node_modules"))).to.equal(modules);
  });

  it("hands releases/ and shared/ to the app user; the app dir itself and current stay root's", async () => {
    const inst = await fleet.add();
    await deployed(inst, v1);
    await deployed(inst, newDep);

    for (const dir of ["releases", "shared"]) {
      expect(pathsNotOwnedBy(path.join(inst.appDir, dir), uidOf(fleet.appUser)), dir).to.deep.equal([]);
    }
    const agentUid = process.getuid?.() ?? -1;
    expect(fs.statSync(inst.appDir).uid, "owner of the app dir").to.equal(agentUid);
    expect(fs.lstatSync(path.join(inst.appDir, "current")).uid, "owner of current").to.equal(agentUid);
    // The app itself runs as the app user too.
    const pid = await servicePid(inst);
    const uid = fs
      .readFileSync(`/proc/${pid}/status`, "utf8")
      .split("\n")
      .find((l) => l.startsWith("Uid:"))
      ?.split(/\s+/)[1];
    expect(Number(uid)).to.equal(uidOf(fleet.appUser));
  });

  it("keeps the newest releases plus the current and previous one", async () => {
    const inst = await fleet.add();
    for (const release of [v1, v2, v3]) await deployed(inst, release, 1);
    // keep 1: the newest (current) and the previous one stay.
    expect(releasesOn(inst)).to.deep.equal(["2.0.0", "3.0.0"]);

    await deployed(inst, v4, 2);
    expect(releasesOn(inst)).to.deep.equal(["3.0.0", "4.0.0"]);
    // Environments no kept release uses are removed with the releases.
    expect(fs.readdirSync(path.join(inst.appDir, "shared", "venvs"))).to.have.length(1);
    expect(fs.readdirSync(path.join(inst.appDir, "releases")).filter((n) => n.startsWith("."))).to.deep.equal([]);
  });

  it("reuses a verified release already on the instance without fetching it again", async () => {
    const inst = await fleet.add();
    await deployed(inst, v1);
    await deployed(inst, v2);

    // The artifact is gone: only the release kept on the instance can satisfy this deploy.
    const missing = { ...v1, path: path.join(fleet.root, "artifacts", "gone", "1.0.0.tar.gz") };
    const run = await deployExpecting(inst, paramsFor(inst, missing), 0);

    expect(run.result).to.include({ status: "deployed", version: "1.0.0", previous: "2.0.0" });
    expect((await readVersion(inst))?.version).to.equal("1.0.0");
  });

  it("runs with bash when started by sh, as SSM does", async () => {
    const inst = await fleet.add();
    const script = agentScriptPath();
    const env = {
      ...process.env,
      ...agentEnvironment(paramsFor(inst, v1)),
      ...agentInstanceEnv(inst),
    };
    const shell = fs.existsSync("/bin/dash") ? "/bin/dash" : "sh";
    const { code, stdout } = await new Promise<{ code: number | null; stdout: string }>((resolve, reject) => {
      const child = spawn(shell, [script], { env, stdio: ["ignore", "pipe", "ignore"] });
      let out = "";
      child.stdout.on("data", (d: Buffer) => (out += d.toString()));
      child.on("error", reject);
      child.on("close", (c) => resolve({ code: c, stdout: out }));
    });

    expect(code, stdout).to.equal(0);
    expect(parseAgentResult(stdout)).to.include({ status: "deployed", version: "1.0.0" });
    expect((await readVersion(inst))?.version).to.equal("1.0.0");
  });
});
