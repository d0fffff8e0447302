/**
 * The deploy agent when things go wrong: unhealthy releases, bad artifacts, missing
 * artifacts. Real supervisord, real app, real health checks.
 */
import { expect } from "chai";
import * as fs from "node:fs";
import * as path from "node:path";
import { readVersion, runAgent, servicePid, serviceState } from "../../deploy/local/fleet.js";
import { agentEnvironment } from "../../deploy/transport.js";
import { sharedEmulator, type Emulator } from "../helpers/emulator.js";
import { buildRelease, type BuiltRelease } from "../helpers/releases.js";
import {
  currentTarget,
  deployExpecting,
  deployLog,
  fleetForSuite,
  paramsFor,
  snapshotTree,
  uploadArtifact,
} from "../helpers/supervisor.js";

// Long enough for a healthy release on a busy machine; a broken one uses all of it.
const BROKEN_HEALTH_TIMEOUT_S = 4;

describe("zcp-agent: failures", function () {
  this.timeout(120000);
  let emu: Emulator;
  const fleet = fleetForSuite("zcp-agent-failure");
  let v1: BuiltRelease;
  let v2: BuiltRelease;
  let broken: BuiltRelease;
  let unresolvable: BuiltRelease;

  before(async () => {
    emu = await sharedEmulator();
    const out = path.join(fleet.root, "artifacts");
    v1 = buildRelease(out, { version: "1.0.0" });
    v2 = buildRelease(out, { version: "2.0.0" });
    broken = buildRelease(out, { version: "2.0.1-broken", broken: true });
    // Pins a dependency version the release does not ship: pip cannot resolve it offline.
    unresolvable = buildRelease(out, {
      version: "2.0.2-nodep",
      extraFiles: { "requirements.txt": "--no-index\n--find-links ./vendor\nzcp-example-dep==9.9.9\n" },
    });
  });

  after(async () => {
    await emu?.stop();
  });

  it("rolls back a release that fails its health check; the old version answers again", async () => {
    const inst = await fleet.add();
    await deployExpecting(inst, paramsFor(inst, v1), 0);

    const run = await deployExpecting(inst, paramsFor(inst, broken, { healthTimeoutS: BROKEN_HEALTH_TIMEOUT_S }), 1);

    expect(run.result).to.include({ status: "rolled_back", version: "2.0.1-broken", previous: "1.0.0" });
    expect(run.result?.message).to.match(/503/);
    expect(currentTarget(inst)).to.equal("releases/1.0.0");
    expect(await serviceState(inst)).to.equal("RUNNING");
    expect((await readVersion(inst))?.version).to.equal("1.0.0");
    expect(deployLog(inst).map((l) => l.status)).to.deep.equal(["deployed", "rolled_back"]);
  });

  it("a first deploy that fails its health check reports failed and leaves the service stopped", async () => {
    const inst = await fleet.add();

    const run = await deployExpecting(inst, paramsFor(inst, broken, { healthTimeoutS: BROKEN_HEALTH_TIMEOUT_S }), 1);

    expect(run.result).to.include({ status: "failed", version: "2.0.1-broken", previous: null });
    expect(await serviceState(inst)).to.equal("STOPPED");
    expect(await servicePid(inst)).to.equal(undefined);
    expect(await readVersion(inst)).to.equal(undefined);
    // Nothing points at the broken release: a reboot must not start it.
    expect(currentTarget(inst)).to.equal(undefined);
  });

  it("a dependency install that fails stops the deploy before the switch; the app keeps running", async () => {
    const inst = await fleet.add();
    await deployExpecting(inst, paramsFor(inst, v1), 0);
    const pid = (await readVersion(inst))?.pid;

    const run = await deployExpecting(inst, paramsFor(inst, unresolvable), 1);

    expect(run.result).to.include({ status: "failed", version: "2.0.2-nodep", previous: "1.0.0", current: "1.0.0" });
    expect(run.result?.message).to.match(/installing dependencies failed; 1\.0\.0 is still current/);
    expect(currentTarget(inst)).to.equal("releases/1.0.0");
    const live = await readVersion(inst);
    expect(live?.version).to.equal("1.0.0");
    expect(live?.pid, "the running app was restarted").to.equal(pid);
  });

  it("an agent interrupted while checking health puts the previous release back", async () => {
    const inst = await fleet.add();
    await deployExpecting(inst, paramsFor(inst, v1), 0);

    // SSM cancels a command with SIGTERM; runAgent does the same when its timeout passes.
    const run = await runAgent(inst, agentEnvironment(paramsFor(inst, broken, { healthTimeoutS: 120 })), {
      timeoutMs: 6000,
    });

    expect(run.timedOut).to.equal(true);
    expect(run.result?.status).to.be.oneOf(["rolled_back", "failed"]);
    expect(run.result?.message).to.match(/interrupted/);
    expect(currentTarget(inst)).to.equal("releases/1.0.0");
    expect((await readVersion(inst))?.version).to.equal("1.0.0");
  });

  it("rejects an artifact whose sha256 does not match, exit 2, and changes nothing", async () => {
    const inst = await fleet.add();
    await deployExpecting(inst, paramsFor(inst, v1), 0);
    const pid = await servicePid(inst);
    const before = snapshotTree(inst.appDir);

    // v2's bytes announced with v1's checksum, as a tampered or truncated upload would be.
    const run = await deployExpecting(inst, paramsFor(inst, { ...v2, sha256: v1.sha256 }), 2);

    expect(run.result).to.include({ status: "failed", version: "2.0.0", reason: "checksum" });
    expect(snapshotTree(inst.appDir)).to.deep.equal(before);
    expect(await servicePid(inst)).to.equal(pid);
    expect((await readVersion(inst))?.version).to.equal("1.0.0");
  });

  it("a checksum mismatch on a fresh instance does not even create the app dir", async () => {
    const inst = await fleet.add();

    const run = await deployExpecting(inst, paramsFor(inst, { ...v1, sha256: "0".repeat(64) }), 2);

    expect(run.result?.status).to.equal("failed");
    expect(fs.existsSync(inst.appDir)).to.equal(false);
  });

  it("a missing S3 artifact fails the deploy without touching the instance", async () => {
    const inst = await fleet.add();
    await deployExpecting(inst, paramsFor(inst, v1), 0);
    await uploadArtifact(emu.env, "zcp-artifacts", "releases/zcp-example/other.tar.gz", v1.path);
    const before = snapshotTree(inst.appDir);

    const run = await deployExpecting(
      inst,
      paramsFor(inst, v2, { artifact: "s3://zcp-artifacts/releases/zcp-example/2.0.0.tar.gz" }),
      1,
      emu.env,
    );

    expect(run.result).to.include({ status: "failed", version: "2.0.0", current: "1.0.0" });
    expect(snapshotTree(inst.appDir)).to.deep.equal(before);
    expect((await readVersion(inst))?.version).to.equal("1.0.0");
  });
});
