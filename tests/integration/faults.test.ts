/**
 * The fault suite: releases that go wrong, on the real parts (engine, emulator, supervisord,
 * agent). Whatever the fault, the release ends with a clear message and the documented exit
 * code, no instance is left half-switched (each runs one whole release and answers /version
 * with it), and latest.json and the image parameter (what new instances boot) stay as they were unless the
 * release got that far.
 *
 * One local environment serves every case; each case starts from whatever whole release the
 * fleet is on and checks that precondition first. Covered elsewhere, not repeated here:
 * a release failing its health check at the canary, and a runner killed during
 * FleetDeployment (tests/integration/release.test.ts); SSM Undeliverable, TimedOut and
 * throttling (tests/unit/faults-ssm.test.ts); an image that fails to bake
 * (tests/unit/faults-image.test.ts).
 */
import { expect } from "chai";
import * as fs from "node:fs";
import * as path from "node:path";
import type { ChildProcess } from "node:child_process";
import { collect, ZcpHarness, type ZcpRun } from "../helpers/zcp.js";
import { startEmulator, type Emulator } from "../helpers/emulator.js";
import {
  appDirOf,
  deployLog,
  eventually,
  fillDirectory,
  instanceIds,
  isStep,
  killRunner,
  MountUnavailable,
  overwriteLatest,
  ProgressWatcher,
  RecordedEmulator,
  waitRunnerGone,
  wholeReleases,
} from "../helpers/faults.js";
import { FAIL_HEALTH_MARKER, makeFaultSwitchSource } from "../fixtures/faults/sources.js";
import type { ProgressRecord } from "../../deploy/progress.js";

const RELEASE_STEPS = ["Artifact", "FleetDeployment", "BakedImage", "LaunchTemplateRelease", "LatestPointer"] as const;

interface Steady {
  version: string;
  versions: Record<string, string>;
  latest: { body: Record<string, unknown>; etag: string } | undefined;
  template: { version: number; imageId: string };
}

/** A JavaScript stack frame in output: what an unreadable crash looks like. */
const STACK_FRAME = /^\s+at .+:\d+:\d+\)?$/m;

/** The run's stderr says all of `expected` and shows no stack trace. */
function expectStderr(r: ZcpRun, ...expected: RegExp[]): void {
  for (const re of expected) expect(r.stderr, `stderr should match ${re}:\n${r.stderr}`).to.match(re);
  expect(r.stderr, `stderr shows a stack trace:\n${r.stderr}`).not.to.match(STACK_FRAME);
}

describe("fault suite: every failed release ends cleanly (real engine, emulator, supervisord, agent)", function () {
  const zcp = new ZcpHarness(3);
  after(async () => zcp.teardown());

  /** The fleet's whole release, latest.json and the image parameter; all instances must agree. */
  async function steady(): Promise<Steady> {
    const versions = await wholeReleases(zcp);
    const distinct = [...new Set(Object.values(versions))];
    expect(distinct, `the fleet should be on one release before a fault: ${JSON.stringify(versions)}`).to.have.length(1);
    return { version: distinct[0] as string, versions, latest: await zcp.latest(), template: await zcp.imageParameter() };
  }

  async function expectNothingChanged(before: Steady): Promise<void> {
    expect(await wholeReleases(zcp), "every instance back on the release it had").to.deep.equal(before.versions);
    expect((await zcp.latest())?.etag, "latest.json untouched").to.equal(before.latest?.etag);
    expect(await zcp.imageParameter(), "image parameter untouched").to.deep.equal(before.template);
  }

  /**
   * Starts a release and hands it to `during` with a watcher on its progress. Whatever happens,
   * the release is over when this returns: on an error it is killed, never left running into
   * the next case.
   */
  async function releaseWith(
    args: string[],
    env: Record<string, string>,
    during: (child: ChildProcess, watch: ProgressWatcher) => Promise<void>,
    limitMs = 240000,
  ): Promise<ZcpRun> {
    const watch = new ProgressWatcher(zcp);
    const child = zcp.spawn(["release", "--env", "local", ...args], env);
    const done = collect(child);
    let timer: NodeJS.Timeout | undefined;
    try {
      await during(child, watch);
      return await Promise.race([
        done,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`the release did not end within ${limitMs / 1000}s (it hangs)`)), limitMs);
        }),
      ]);
    } catch (err) {
      killRunner(child.pid);
      await done;
      throw err;
    } finally {
      clearTimeout(timer);
      watch.close();
      await waitRunnerGone(child.pid);
    }
  }

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

  // A runner killed during FleetDeployment is in release.test.ts. For the other steps the
  // emulator is frozen when the step before ends, so the step cannot finish before the kill
  // lands (its first AWS call waits), and thawed once the runner is gone.
  const killPoints: { step: string; resource: string; freezeAt: (r: ProgressRecord) => boolean; fleetMoved: boolean; templateMoved: boolean }[] = [
    { step: "Artifact", resource: "artifact", freezeAt: isStep("Artifact", "start"), fleetMoved: false, templateMoved: false },
    { step: "BakedImage", resource: "image", freezeAt: isStep("FleetDeployment", "done"), fleetMoved: true, templateMoved: false },
    { step: "LaunchTemplateRelease", resource: "launch-template", freezeAt: isStep("BakedImage", "done"), fleetMoved: true, templateMoved: false },
    { step: "LatestPointer", resource: "latest", freezeAt: isStep("LaunchTemplateRelease", "done"), fleetMoved: true, templateMoved: true },
  ];
  for (const point of killPoints) {
    it(`a runner killed during ${point.step}: nothing half-done, and the next release says recovered: and completes`, async function () {
      const before = await steady();
      const version = `f-kill-${point.step.toLowerCase()}`;
      const emulator = new RecordedEmulator(zcp);
      let killedAt: ProgressRecord | undefined;
      let r: ZcpRun;
      try {
        r = await releaseWith(["--version", version], {}, async (child, watch) => {
          watch.once(point.freezeAt, () => emulator.pause());
          watch.once(isStep(point.step, "start"), (rec) => {
            emulator.pause();
            killRunner(child.pid);
            killedAt = rec;
          });
          await watch.next(`${point.step} to start`, isStep(point.step, "start"), 180000);
        });
      } finally {
        emulator.resume();
      }
      expect(killedAt, `${point.step} never started:\n${r.stderr}`).to.not.equal(undefined);
      expect(r.code, "the runner was killed").to.equal(null);

      const expected = point.fleetMoved ? Object.fromEntries(Object.keys(before.versions).map((id) => [id, version])) : before.versions;
      expect(await wholeReleases(zcp), "each instance on a whole release").to.deep.equal(expected);
      expect((await zcp.latest())?.etag, "latest.json moves only in the last step").to.equal(before.latest?.etag);
      const template = await zcp.imageParameter();
      if (point.templateMoved) expect(template.version, "the template step had finished").to.be.greaterThan(before.template.version);
      else expect(template, "the image parameter moves only in its own step").to.deep.equal(before.template);

      const next = await zcp.run(["release", "--env", "local", "--version", version, "--json"]);
      expect(next.code, next.stderr).to.equal(0);
      // Both traces of the kill are found and cleared: the dead runner's lock, and the step
      // the engine had begun but never finished.
      expectStderr(
        next,
        /recovered: removed the lock of an interrupted release \(.* pid \d+ .*no longer running\)/,
        new RegExp(`recovered: an interrupted release left 1 pending operation\\(s\\) \\(\\w+ ${point.resource}\\)`),
      );
      const summary = JSON.parse(next.stdout) as { version: string; imageId: string; imageParameterVersion: number };
      expect(summary.version).to.equal(version);
      expect(Object.values(await wholeReleases(zcp))).to.deep.equal([version, version, version]);
      expect((await zcp.latest())?.body).to.include({ version, imageId: summary.imageId });
      expect(await zcp.imageParameter()).to.deep.equal({ version: summary.imageParameterVersion, imageId: summary.imageId });
    });
  }

  // Last: a restarted emulator is an empty world, so this case ends the shared environment's
  // history. deploy/local/environment.ts documents what follows: the next command finds the
  // recorded emulator gone, starts a fresh one, discards the fleet and the release stack that
  // described the old world, and seeds a new one; the next release is a first release.
  it("the emulator restarting mid-release: exit 1 without hanging; the next command starts a fresh world and the next release seeds it", async function () {
    const before = await steady();
    const emulator = new RecordedEmulator(zcp);
    let replacement: Emulator | undefined;
    let r: ZcpRun;
    try {
      r = await releaseWith(["--version", "f-restart"], {}, async (_child, watch) => {
        // Frozen as the canary is named, before its agent can fetch the artifact.
        watch.once(
          (rec) => rec.kind === "log" && rec.step === "FleetDeployment" && rec.message.startsWith("canary: "),
          () => emulator.pause(),
        );
        await watch.next("the canary to start", (rec) => rec.kind === "log" && rec.message.startsWith("canary: "), 120000);
        await emulator.kill();
        replacement = await startEmulator({ port: emulator.port });
      }, 180000);
    } finally {
      await replacement?.stop();
    }
    expect(r.code, r.stdout + r.stderr).to.equal(1);
    expectStderr(r, /zcp: release failed: .*release f-restart failed in canary/s, /fetch.*s3:\/\/zcp-local-artifacts\/releases\/example\/f-restart\.tar\.gz/);
    expect(await wholeReleases(zcp), "the canary never switched").to.deep.equal(before.versions);

    const status = await zcp.run(["status", "--env", "local", "--json"]);
    expect(status.code, status.stderr).to.equal(0);
    expectStderr(status, /started the AWS emulator on http:\/\/127\.0\.0\.1:\d+/, /seeded image parameter \/zcp\/example\/local\/image-id/, /seeded launch template zcp-example-local/, /seeded 3 instance\(s\) in the emulator/);
    const s = JSON.parse(status.stdout) as { latest: unknown; instances: { instanceId: string; version: string }[] };
    expect(s.latest, "a fresh world has no latest release").to.equal(null);
    expect(s.instances.map((i) => i.version)).to.deep.equal(["not answering", "not answering", "not answering"]);
    expect(s.instances.map((i) => i.instanceId).some((id) => id in before.versions), "new instances, not the old ones").to.equal(false);

    const next = await zcp.run(["release", "--env", "local", "--version", "f-after", "--json"]);
    expect(next.code, next.stderr).to.equal(0);
    const summary = JSON.parse(next.stdout) as { previousVersion: string | null };
    expect(summary.previousVersion).to.equal(null);
    expect(Object.values(await wholeReleases(zcp))).to.deep.equal(["f-after", "f-after", "f-after"]);
    const latest = await zcp.latest();
    expect(latest?.body.version).to.equal("f-after");
    expect(latest?.body).not.to.have.property("previous");
  });
});
