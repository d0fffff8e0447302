/**
 * The app user is the attacker: the app's code, its dependencies and anyone with its shell
 * run as it, and the deploy agent runs as root. These tests play that user against a real
 * agent, a real supervisord and real files: they plant links to root-owned files and
 * directories outside the app dir, forge zcp's markers, leave a daemon behind, and show that
 * nothing outside the app dir is deleted, written or leaked, and that the deploy says why it
 * refused.
 *
 * They need root (only root can switch to an app user); without it there is no boundary to
 * test and the suite is skipped, saying so.
 */
import { execFileSync, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { expect } from "chai";
import { instanceStateDir, readVersion, servicePid, type LocalInstance } from "../../deploy/local/fleet.js";
import { daemonizingPth, makeVictim, ROOT_SECRET } from "../fixtures/agent/hostile-app.js";
import { buildRelease, type BuiltRelease } from "../helpers/releases.js";
import {
  currentTarget,
  deployExpecting,
  deployLog,
  fleetForSuite,
  isRoot,
  paramsFor,
  snapshotTree,
} from "../helpers/supervisor.js";

const SUDO_USER = "zcp-sudoer";

describe("zcp-agent: a hostile app user (as root)", function () {
  this.timeout(240000);
  const fleet = fleetForSuite("zcp-agent-hostile");
  let v1: BuiltRelease;
  let v2: BuiltRelease;
  let v3: BuiltRelease;
  let newDep: BuiltRelease;
  let victimCount = 0;

  before(function () {
    if (!isRoot()) {
      // Without root the agent is the app user: there is no privilege to defend.
      this.skip();
    }
    const out = path.join(fleet.root, "artifacts");
    v1 = buildRelease(out, { version: "1.0.0" });
    v2 = buildRelease(out, { version: "2.0.0" });
    v3 = buildRelease(out, { version: "3.0.0" });
    newDep = buildRelease(out, { version: "5.0.0", dependencyVersion: "1.1.0" });
  });


  /** Runs a command as the app user; returns whether it succeeded. */
  function asAppUser(...cmd: string[]): boolean {
    return spawnSync("runuser", ["-u", fleet.appUser, "--", ...cmd], { stdio: "ignore" }).status === 0;
  }

  function mustAsAppUser(...cmd: string[]): void {
    expect(asAppUser(...cmd), `as the app user: ${cmd.join(" ")}`).to.equal(true);
  }

  /** A fresh root-owned victim outside every app dir. */
  function victim(): string {
    victimCount += 1;
    return makeVictim(fleet.root, `victim-${victimCount}`);
  }

  /** Every readable file under `dir` (not following links) that holds the root secret. */
  function filesHoldingSecret(dir: string): string[] {
    const hits: string[] = [];
    const walk = (p: string) => {
      const st = fs.lstatSync(p);
      if (st.isDirectory()) for (const name of fs.readdirSync(p)) walk(path.join(p, name));
      else if (st.isFile() && fs.readFileSync(p, "utf8").includes(ROOT_SECRET)) hits.push(p);
    };
    walk(dir);
    return hits;
  }

  async function deployedOnce(release: BuiltRelease): Promise<LocalInstance> {
    const inst = await fleet.add();
    await deployExpecting(inst, paramsFor(inst, release), 0);
    return inst;
  }

  it("the app user cannot replace releases/, shared/ or current: the app dir and current are root's", async () => {
    const inst = await deployedOnce(v1);
    const target = victim();

    expect(fs.statSync(inst.appDir).uid, "owner of the app dir").to.equal(0);
    expect(fs.lstatSync(path.join(inst.appDir, "current")).uid, "owner of current").to.equal(0);
    expect(asAppUser("mv", path.join(inst.appDir, "releases"), path.join(inst.appDir, "releases.moved"))).to.equal(false);
    expect(asAppUser("mv", path.join(inst.appDir, "shared"), path.join(inst.appDir, "shared.moved"))).to.equal(false);
    expect(asAppUser("ln", "-sfn", target, path.join(inst.appDir, "current"))).to.equal(false);
    expect(currentTarget(inst)).to.equal("releases/1.0.0");
  });

  it("releases/ planted as a link (while the app user owned the app dir) is refused; nothing behind it changes", async () => {
    const inst = await deployedOnce(v1);
    const target = victim();
    const before = snapshotTree(target);
    const pid = await servicePid(inst);
    // The layout of an app dir the app user owns, as it did before the agent took it back.
    execFileSync("chown", [fleet.appUser, inst.appDir]);
    mustAsAppUser("mv", path.join(inst.appDir, "releases"), path.join(inst.appDir, "releases.real"));
    mustAsAppUser("ln", "-s", target, path.join(inst.appDir, "releases"));

    const run = await deployExpecting(inst, paramsFor(inst, v2, { keepReleases: 1 }), 2);

    expect(run.result).to.include({ status: "failed", reason: "unsafe" });
    expect(run.result?.message).to.match(/releases in .* is a symlink/);
    expect(snapshotTree(target)).to.deep.equal(before);
    expect(await servicePid(inst), "the app was restarted").to.equal(pid);
  });

  for (const kind of ["venvs", "node"]) {
    it(`shared/${kind} planted as a link to a root-owned directory is refused; nothing there is deleted`, async () => {
      const inst = await deployedOnce(v1);
      const target = victim();
      const before = snapshotTree(target);
      const planted = path.join(inst.appDir, "shared", kind);
      if (fs.existsSync(planted)) mustAsAppUser("mv", planted, `${planted}.real`);
      mustAsAppUser("ln", "-s", target, planted);

      const run = await deployExpecting(inst, paramsFor(inst, v2, { keepReleases: 1 }), 2);

      expect(run.result).to.include({ status: "failed", reason: "unsafe", current: "1.0.0" });
      expect(run.result?.message).to.include(`shared/${kind} in ${inst.appDir} is a symlink`);
      expect(snapshotTree(target)).to.deep.equal(before);
      expect((await readVersion(inst))?.version).to.equal("1.0.0");
    });
  }

  it("a marker planted as a link to a root-owned file is never written through", async () => {
    const inst = await deployedOnce(v1);
    await deployExpecting(inst, paramsFor(inst, v2), 0);
    const target = victim();
    const before = snapshotTree(target);
    const release1 = path.join(inst.appDir, "releases", "1.0.0");
    mustAsAppUser("rm", "-f", path.join(release1, ".zcp-activated"));
    mustAsAppUser("ln", "-s", path.join(target, "secret"), path.join(release1, ".zcp-activated"));

    // A rollback to the release the app user tampered with.
    const run = await deployExpecting(inst, paramsFor(inst, v1), 0);

    expect(run.result).to.include({ status: "deployed", version: "1.0.0" });
    expect(snapshotTree(target)).to.deep.equal(before);
    expect(fs.readFileSync(path.join(target, "secret"), "utf8")).to.equal(`${ROOT_SECRET}\n`);
  });

  it("a release the app user forged, checksum marker and all, is not run: the artifact is fetched and verified", async () => {
    const inst = await deployedOnce(v1);
    await deployExpecting(inst, paramsFor(inst, v2), 0);
    const forged = path.join(inst.appDir, "releases", "3.0.0");
    mustAsAppUser("cp", "-a", path.join(inst.appDir, "releases", "2.0.0"), forged);
    mustAsAppUser("sh", "-c", `echo forged > '${forged}/VERSION' && echo ${v3.sha256} > '${forged}/.zcp-sha256'`);

    const run = await deployExpecting(inst, paramsFor(inst, v3), 0);

    expect(run.result).to.include({ status: "deployed", version: "3.0.0" });
    expect(fs.readFileSync(path.join(forged, "VERSION"), "utf8").trim()).to.equal("3.0.0");
    expect((await readVersion(inst))?.version).to.equal("3.0.0");
  });

  it("deploy logs planted as links to a root-owned file are never written through; the log is root's", async () => {
    const inst = await deployedOnce(v1);
    const target = victim();
    const before = snapshotTree(target);
    for (const log of ["deploy.log", "deploy-detail.log"]) {
      const planted = path.join(inst.appDir, "shared", log);
      mustAsAppUser("rm", "-f", planted);
      mustAsAppUser("ln", "-s", path.join(target, "secret"), planted);
    }

    await deployExpecting(inst, paramsFor(inst, v2), 0);

    expect(snapshotTree(target)).to.deep.equal(before);
    expect(deployLog(inst).map((l) => `${l.status} ${l.version}`)).to.deep.equal(["deployed 1.0.0", "deployed 2.0.0"]);
    const log = fs.statSync(path.join(instanceStateDir(inst), "deploy.log"));
    expect(log.uid, "owner of the deploy log").to.equal(0);
    expect(log.mode & 0o022, "deploy log writable by others").to.equal(0);
  });

  it("a lockfile linked to a root-only file is refused and its content leaks nowhere", async () => {
    const inst = await deployedOnce(v1);
    await deployExpecting(inst, paramsFor(inst, v2), 0);
    const target = victim();
    const lockfile = path.join(inst.appDir, "releases", "1.0.0", "requirements.txt");
    mustAsAppUser("rm", "-f", lockfile);
    mustAsAppUser("ln", "-s", path.join(target, "secret"), lockfile);

    const run = await deployExpecting(inst, paramsFor(inst, v1), 2);

    expect(run.result).to.include({ status: "failed", reason: "unsafe", current: "2.0.0" });
    expect(run.result?.message).to.match(/requirements\.txt of release 1\.0\.0 is a symlink/);
    expect(`${run.stdout}${run.stderr}`).to.not.include(ROOT_SECRET);
    expect(filesHoldingSecret(inst.appDir)).to.deep.equal([]);
    expect(filesHoldingSecret(instanceStateDir(inst))).to.deep.equal([]);
    expect((await readVersion(inst))?.version).to.equal("2.0.0");
  });

  it("a daemon started by the app user's code during an install does not hold the lock", async () => {
    const inst = await deployedOnce(v1);
    const home = execFileSync("getent", ["passwd", fleet.appUser], { encoding: "utf8" }).split(":")[5] ?? "";
    const appHome = home !== "" && fs.existsSync(home) ? home : path.join(inst.appDir, "shared");
    const py = execFileSync("/usr/bin/python3", ["-c", "import sys; print('python%d.%d' % sys.version_info[:2])"], {
      encoding: "utf8",
    }).trim();
    const site = path.join(appHome, ".local", "lib", py, "site-packages");
    const pidFile = path.join(inst.appDir, "shared", "daemon.pid");
    mustAsAppUser("mkdir", "-p", site);
    mustAsAppUser("touch", path.join(site, "zcp-daemon.pth"));
    fs.writeFileSync(path.join(site, "zcp-daemon.pth"), daemonizingPth(pidFile, 25));
    try {
      // A new lockfile: the agent creates a virtual environment, a Python the app user starts.
      await deployExpecting(inst, paramsFor(inst, newDep), 0);
      expect(fs.existsSync(pidFile), "the planted daemon started").to.equal(true);

      const next = await deployExpecting(inst, paramsFor(inst, v2), 0);

      expect(next.result).to.include({ status: "deployed", version: "2.0.0" });
    } finally {
      const pid = fs.existsSync(pidFile) ? Number.parseInt(fs.readFileSync(pidFile, "utf8"), 10) : NaN;
      if (Number.isInteger(pid) && pid > 1) {
        try {
          process.kill(pid, "SIGKILL");
        } catch {
          // already gone
        }
      }
      fs.rmSync(path.join(appHome, ".local"), { recursive: true, force: true });
    }
  });

  it("two spellings of one app dir share one lock (keyed by its real path)", async () => {
    const inst = await deployedOnce(v1);
    const alias = path.join(fleet.root, `alias-${inst.id}`);
    fs.symlinkSync(inst.dir, alias);
    const viaAlias = { ...paramsFor(inst, v3), appDir: path.join(alias, "app") };

    const [winner, second] = await Promise.all([
      deployExpecting(inst, paramsFor(inst, v2), 0),
      new Promise((r) => setTimeout(r, 300)).then(() => deployExpecting(inst, viaAlias, 3, { ZCP_APP_ROOT: fleet.root })),
    ]);

    expect(second.result).to.include({ status: "failed", reason: "locked" });
    expect(winner.result).to.include({ status: "deployed", version: "2.0.0" });
    expect(currentTarget(inst)).to.equal("releases/2.0.0");
  });

  describe("who the app may run as, and where", () => {
    function ensureSudoer(): void {
      execFileSync("groupadd", ["-f", "sudo"]);
      if (spawnSync("id", ["-u", SUDO_USER], { stdio: "ignore" }).status !== 0) {
        execFileSync("useradd", ["--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "-G", "sudo", SUDO_USER]);
      }
    }

    async function refused(inst: LocalInstance, params: ReturnType<typeof paramsFor>, pattern: RegExp, env: Record<string, string> = {}) {
      const run = await deployExpecting(inst, params, 2, env);
      expect(run.result).to.include({ status: "failed", reason: "rejected" });
      expect(run.result?.message).to.match(pattern);
      expect(fs.existsSync(inst.appDir), "app dir created").to.equal(false);
    }

    it("refuses root (uid 0) as the app user", async () => {
      const inst = await fleet.add();
      await refused(inst, paramsFor(inst, v1, { appUser: "root" }), /ZCP_APP_USER: root has uid 0/);
    });

    it("refuses an app user in the sudo group", async () => {
      ensureSudoer();
      const inst = await fleet.add();
      await refused(inst, paramsFor(inst, v1, { appUser: SUDO_USER }), /ZCP_APP_USER: zcp-sudoer is a member of sudo/);
    });

    it("refuses an app dir outside the configured app root", async () => {
      const inst = await fleet.add();
      await refused(inst, paramsFor(inst, v1), /ZCP_APP_DIR must be .* or inside it/, {
        ZCP_APP_ROOT: path.join(inst.dir, "elsewhere"),
      });
    });

    it("refuses an app dir inside the root that resolves outside it through a link", async () => {
      const inst = await fleet.add();
      const outside = path.join(fleet.root, `outside-${inst.id}`);
      fs.mkdirSync(outside, { mode: 0o755 });
      fs.symlinkSync(outside, path.join(inst.dir, "linked"));
      const run = await deployExpecting(inst, { ...paramsFor(inst, v1), appDir: path.join(inst.dir, "linked", "app") }, 2);
      expect(run.result).to.include({ status: "failed", reason: "rejected" });
      expect(run.result?.message).to.match(/resolves to .*, outside the configured app root/);
      expect(fs.readdirSync(outside)).to.deep.equal([]);
    });
  });

  describe("what extraction keeps", () => {
    it("drops setuid and setgid bits", async () => {
      const release = buildRelease(path.join(fleet.root, "artifacts"), {
        version: "6.0.0-suid",
        prepare: (staging) => {
          fs.writeFileSync(path.join(staging, "tool"), "#!/bin/sh\nid\n");
          fs.chmodSync(path.join(staging, "tool"), 0o6755);
        },
      });
      const inst = await deployedOnce(release);
      const mode = fs.statSync(path.join(inst.appDir, "releases", "6.0.0-suid", "tool")).mode;
      expect((mode & 0o7777).toString(8)).to.equal("755");
    });

    for (const [kind, make] of [
      ["a device node", (p: string) => execFileSync("mknod", [p, "c", "1", "3"])],
      ["a fifo", (p: string) => execFileSync("mkfifo", [p])],
    ] as const) {
      it(`refuses an artifact holding ${kind}, before anything changes`, async () => {
        const release = buildRelease(path.join(fleet.root, "artifacts"), {
          version: `6.1.0-${kind.replace(/\W+/g, "-")}`,
          prepare: (staging) => make(path.join(staging, "special")),
        });
        const inst = await deployedOnce(v1);
        const before = snapshotTree(inst.appDir);

        const run = await deployExpecting(inst, paramsFor(inst, release), 2);

        expect(run.result).to.include({ status: "failed", reason: "rejected", current: "1.0.0" });
        expect(run.result?.message).to.match(/device node, fifo or socket/);
        expect(snapshotTree(inst.appDir)).to.deep.equal(before);
      });
    }
  });
});
