/**
 * The fault suite: releases that go wrong, on the real parts (engine, emulator, supervisord,
 * agent). Whatever the fault, the release ends with a clear message and the documented exit
 * code, no instance is left half-switched (each runs one whole release and answers /version
 * with it), and latest.json and the image parameter (what new instances boot) stay as they were unless the
 * release got that far.
 *
 * One local environment serves every case; each case starts from whatever whole release the
 * fleet is on and checks that precondition first. Covered elsewhere, not repeated here:
 * a runner killed during the other steps and the emulator restarting mid-release
 * (tests/integration/faults-recovery.test.ts, its own environment so the two files run side
 * by side); a release failing its health check at the canary, and a runner killed during
 * FleetDeployment (tests/integration/release.test.ts); SSM Undeliverable, TimedOut and
 * throttling (tests/unit/faults-ssm.test.ts); an image that fails to bake
 * (tests/unit/faults-image.test.ts).
 */
import { expect } from "chai";
import * as fs from "node:fs";
import * as path from "node:path";
import { ZcpHarness, type ZcpRun } from "../helpers/zcp.js";
import {
  appDirOf,
  deployLog,
  eventually,
  expectStderr,
  faultDriver,
  fillDirectory,
  instanceIds,
  isStep,
  MountUnavailable,
  overwriteLatest,
  ProgressWatcher,
  wholeReleases,
} from "../helpers/faults.js";
import { FAIL_HEALTH_MARKER, makeFaultSwitchSource } from "../fixtures/faults/sources.js";

const RELEASE_STEPS = ["Artifact", "FleetDeployment", "BakedImage", "LaunchTemplateRelease", "LatestPointer"] as const;

describe("fault suite: every failed release ends cleanly (real engine, emulator, supervisord, agent)", function () {
  const zcp = new ZcpHarness(3);
  const { steady, expectNothingChanged, releaseWith } = faultDriver(zcp);
  after(async () => zcp.teardown());

  it("a good release runs the steps strictly one after another, so a failed step leaves every later one undone", async function () {
    let watch: ProgressWatcher | undefined;
    const r = await releaseWith(["--version", "f-base"], {}, async (_child, w) => {
      watch = w;
    });
    expect(r.code, r.stdout + r.stderr).to.equal(0);
    const steps = watch?.steps() ?? [];
    for (const [i, step] of RELEASE_STEPS.entries()) {
      expect(steps, `${step} ran`).to.include.members([`${step}:start`, `${step}:done`]);
      const next = RELEASE_STEPS[i + 1];
      if (next) {
        expect(steps.indexOf(`${next}:start`), `${next} starts only after ${step} is done: ${steps.join(", ")}`).to.be.greaterThan(
          steps.indexOf(`${step}:done`),
        );
      }
    }
    const versions = await wholeReleases(zcp);
    expect(Object.values(versions)).to.deep.equal(["f-base", "f-base", "f-base"]);
    expect((await zcp.latest())?.body.version).to.equal("f-base");
  });

  it("an instance failing in the second batch: exit 1 naming the batch; the canary and the batch's healthy instance are rolled back", async function () {
    const before = await steady();
    const [canary, healthy, broken] = instanceIds(zcp) as [string, string, string];
    const marker = path.join(appDirOf(zcp, broken), "shared", FAIL_HEALTH_MARKER);
    const source = makeFaultSwitchSource();
    let r: ZcpRun;
    try {
      fs.writeFileSync(marker, "this instance fails the fault-switch release's health check\n");
      // A canary, then one batch of two: the broken instance fails next to a healthy one.
      r = await zcp.run(["release", "--env", "local", "--version", "f-batch2", "--source", source, "--batch", "2"]);
    } finally {
      fs.rmSync(marker, { force: true });
      fs.rmSync(source, { recursive: true, force: true });
    }
    expect(r.code, r.stdout + r.stderr).to.equal(1);
    expectStderr(
      r,
      /zcp: release failed: /,
      /release f-batch2 failed in batch 2\/2: 1 instance\(s\) unhealthy/,
      // The broken instance's own agent went back; the runner reverted the two it had switched.
      new RegExp(`${broken}\\s+batch 2\\s+rolled_back`),
      ...[canary, healthy].map((id) => new RegExp(`${id}\\s+batch 0\\s+reverted .*rolled back to ${before.version}`)),
    );
    await expectNothingChanged(before);
  });

  it("an agent that outlives the command timeout: exit 1 with timed_out; the signalled agent rolls its instance back", async function () {
    const before = await steady();
    const [canary] = instanceIds(zcp) as [string];
    // The app sleeps for ten minutes before listening; the health check would wait a minute,
    // the runner only 20 seconds.
    const source = makeFaultSwitchSource({ slowStartS: 600 });
    let r: ZcpRun;
    try {
      r = await zcp.run(["release", "--env", "local", "--version", "f-slow", "--source", source], {
        ZCP_LOCAL_COMMAND_TIMEOUT_S: "20",
        ZCP_LOCAL_HEALTH_TIMEOUT_S: "60",
      });
    } finally {
      fs.rmSync(source, { recursive: true, force: true });
    }
    expect(r.code, r.stdout + r.stderr).to.equal(1);
    expectStderr(r, /release f-slow failed in canary/, new RegExp(`${canary}\\s+batch 1\\s+timed_out .*agent timed out after 20s`));
    // Its result line is lost, so the runner rolls it back to the release latest.json names
    // (the fleet's previous release) instead of leaving it unknown.
    expect(r.stderr).to.not.contain("revert_unknown");
    // The runner stops waiting at the timeout and signals the agent, which puts its instance
    // back on its own (switching back if it had switched) and records that in its deploy log;
    // the rollback's own run may come after it there.
    const last = await eventually(
      "the canary's agent to finish after the timeout",
      () => deployLog(zcp, canary).filter((line) => line.version === "f-slow").at(-1),
      120000,
    );
    expect(last.current, JSON.stringify(last)).to.equal(before.version);
    expect(String(last.message), JSON.stringify(last)).to.match(/interrupted by SIGTERM/);
    // The app takes ten minutes to listen, so the agent is normally waiting for health by then.
    expect(last.status, JSON.stringify(last)).to.be.oneOf(["rolled_back", "failed"]);
    if (last.status === "rolled_back") expect(String(last.message)).to.match(new RegExp(`rolled back to ${before.version}`));
    await expectNothingChanged(before);
  });

  // Needs a tmpfs mount (root); where mounting is refused it is reported pending with the reason.
  it("an instance whose disk is full (a tmpfs; pending where mounts are refused): exit 1, the instances switched before it rolled back, the old version still serving", async function () {
    const before = await steady();
    const [canary, healthy, full] = instanceIds(zcp) as [string, string, string];
    let undo: () => void;
    try {
      undo = fillDirectory(path.join(appDirOf(zcp, full), "releases"));
    } catch (err) {
      if (err instanceof MountUnavailable) {
        console.log(`      pending: ${err.message}`);
        this.skip();
      }
      throw err;
    }
    let r: ZcpRun;
    try {
      r = await zcp.run(["release", "--env", "local", "--version", "f-full", "--batch", "2"]);
      // Checked while the disk is still full: nothing on that instance moved.
      expect(await wholeReleases(zcp)).to.deep.equal(before.versions);
    } finally {
      undo();
    }
    expect(r.code, r.stdout + r.stderr).to.equal(1);
    expectStderr(
      r,
      /release f-full failed in batch 2\/2/,
      new RegExp(`${full}\\s+batch 2\\s+failed .*extract.*; ${before.version} is still current`),
      ...[canary, healthy].map((id) => new RegExp(`${id}\\s+batch 0\\s+reverted`)),
    );
    await expectNothingChanged(before);
  });

  it("latest.json moved by another writer mid-release: exit 1 naming the race, the other writer's pointer and the image parameter kept", async function () {
    const before = await steady();
    const templateBefore = await zcp.imageParameter();
    const foreign = {
      version: "f-other",
      key: "releases/example/f-other.tar.gz",
      sha256: "0".repeat(64),
      releasedAt: new Date().toISOString(),
      previous: before.version,
    };
    const r = await releaseWith(["--version", "f-race"], {}, async (_child, watch) => {
      await watch.next("FleetDeployment to start", isStep("FleetDeployment", "start"), 120000);
      await overwriteLatest(zcp, foreign);
    });
    const theirs = await zcp.latest();
    expect(r.code, r.stdout + r.stderr).to.equal(1);
    // The race is seen before the image parameter moves, so new instances never boot an
    // image that latest.json does not name.
    expectStderr(
      r,
      /LaunchTemplateRelease: latest\.json moved while this release ran \(it now names f-other\); the image parameter \/zcp\/example\/local\/image-id was left as it was/,
    );
    expect(await zcp.imageParameter(), "the image parameter keeps its image").to.deep.equal(templateBefore);
    expect(theirs?.body, "the other writer's latest.json is kept as they wrote it").to.deep.equal(foreign);
    // Not rolled back, by design: the pointer is the last step, so by the time the race is
    // lost every instance runs f-race and passed its health check. Undoing a healthy fleet
    // because a pointer write lost would throw away a good release; which release should be
    // latest is the operator's call, and the message says so.
    expect(Object.values(await wholeReleases(zcp)), "the fleet stays on the healthy new release").to.deep.equal(["f-race", "f-race", "f-race"]);
  });
});
