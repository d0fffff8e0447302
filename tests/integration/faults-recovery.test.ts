/**
 * The fault suite, part two: releases interrupted where nothing can report back, on the real
 * parts (engine, emulator, supervisord, agent). A runner killed during each step after the
 * fleet's (and during Artifact) leaves nothing half-done, and the next release recovers its
 * traces and completes; the emulator restarting mid-release ends the release without a hang
 * and the next command starts a fresh world.
 *
 * Its own local environment, so it runs beside tests/integration/faults.test.ts (the first
 * part, releases that fail and report it); the same rules hold: each case starts from the
 * whole release the fleet is on and checks that first.
 */
import { expect } from "chai";
import { ZcpHarness, type ZcpRun } from "../helpers/zcp.js";
import { startEmulator, type Emulator } from "../helpers/emulator.js";
import { expectStderr, faultDriver, isStep, killRunner, RecordedEmulator, wholeReleases } from "../helpers/faults.js";
import type { ProgressRecord } from "../../deploy/progress.js";

describe("fault suite, recovery: an interrupted release leaves nothing half-done (real engine, emulator, supervisord, agent)", function () {
  // Two instances are enough here (a canary and one batch): every case is about the steps
  // around the fleet, and fewer agents keep the file short.
  const INSTANCES = 2;
  const zcp = new ZcpHarness(INSTANCES);
  const all = <T>(value: T): T[] => Array<T>(INSTANCES).fill(value);
  const { steady, releaseWith } = faultDriver(zcp);
  after(async () => zcp.teardown());

  before(async function () {
    const base = await zcp.run(["release", "--env", "local", "--version", "r-base"]);
    expect(base.code, base.stdout + base.stderr).to.equal(0);
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
      expect(Object.values(await wholeReleases(zcp))).to.deep.equal(all(version));
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
    expectStderr(status, /started the AWS emulator on http:\/\/127\.0\.0\.1:\d+/, /seeded image parameter \/zcp\/example\/local\/image-id/, /seeded launch template zcp-example-local/, new RegExp(`seeded ${INSTANCES} instance\\(s\\) in the emulator`));
    const s = JSON.parse(status.stdout) as { latest: unknown; instances: { instanceId: string; version: string }[] };
    expect(s.latest, "a fresh world has no latest release").to.equal(null);
    expect(s.instances.map((i) => i.version)).to.deep.equal(all("not answering"));
    expect(s.instances.map((i) => i.instanceId).some((id) => id in before.versions), "new instances, not the old ones").to.equal(false);

    const next = await zcp.run(["release", "--env", "local", "--version", "f-after", "--json"]);
    expect(next.code, next.stderr).to.equal(0);
    const summary = JSON.parse(next.stdout) as { previousVersion: string | null };
    expect(summary.previousVersion).to.equal(null);
    expect(Object.values(await wholeReleases(zcp))).to.deep.equal(all("f-after"));
    const latest = await zcp.latest();
    expect(latest?.body.version).to.equal("f-after");
    expect(latest?.body).not.to.have.property("previous");
  });
});
