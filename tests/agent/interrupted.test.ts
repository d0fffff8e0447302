/**
 * The agent survives SIGKILL between its switch and its health check, the way SSM stops a run
 * at the execution timeout or on CancelCommand (the whole process group, no trap runs): the
 * next run, whatever starts it (a release, a rollback, boot converge), first puts back the
 * release the pending marker names. And a deploy of the version already being deployed waits
 * for the lock instead of failing.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { expect } from "chai";
import { instanceStateDir, readVersion, type LocalInstance } from "../../deploy/local/fleet.js";
import { buildRelease, type BuiltRelease } from "../helpers/releases.js";
import { currentTarget, deployExpecting, fleetForSuite, killAgentAfterSwitch, paramsFor } from "../helpers/supervisor.js";

describe("zcp-agent: SIGKILL between switch and health check", function () {
  this.timeout(180000);
  const fleet = fleetForSuite("zcp-agent-kill");
  let v1: BuiltRelease;
  let v2: BuiltRelease;
  let broken: BuiltRelease;

  before(() => {
    const out = path.join(fleet.root, "artifacts");
    v1 = buildRelease(out, { version: "1.0.0" });
    v2 = buildRelease(out, { version: "2.0.0" });
    broken = buildRelease(out, { version: "3.0.0", broken: true });
  });


  it("a run killed after the switch leaves a pending marker; the next run of the same version reverts first and rolls the unhealthy release back", async () => {
    const inst = await fleet.add();
    await deployExpecting(inst, paramsFor(inst, v1), 0);
    expect(await killAgentAfterSwitch(inst, paramsFor(inst, broken))).to.equal("releases/3.0.0");
    // Killed with no trap: switched, unverified, and the marker names where to go back.
    expect(currentTarget(inst)).to.equal("releases/3.0.0");
    expect(fs.readFileSync(pendingMarker(inst), "utf8").trim()).to.equal("1.0.0");

    // A resent command (or boot converge to it) must not take 3.0.0 as the release to keep.
    const again = await deployExpecting(inst, paramsFor(inst, broken), 1);
    expect(again.result).to.include({ status: "rolled_back", version: "3.0.0", previous: "1.0.0" });
    expect(currentTarget(inst)).to.equal("releases/1.0.0");
    expect((await readVersion(inst))?.version).to.equal("1.0.0");
    expect(fs.existsSync(pendingMarker(inst))).to.equal(false);
  });

  it("after a killed switch, a deploy of another version reports the verified release as previous, so a rollback goes there", async () => {
    const inst = await fleet.add();
    await deployExpecting(inst, paramsFor(inst, v1), 0);
    await killAgentAfterSwitch(inst, paramsFor(inst, broken));
    const next = await deployExpecting(inst, paramsFor(inst, v2), 0);
    expect(next.result).to.include({ status: "deployed", version: "2.0.0", previous: "1.0.0" });
    expect(fs.existsSync(pendingMarker(inst))).to.equal(false);
  });

  it("a deploy of the version already being deployed waits for the lock and finds it current, instead of exiting 3", async () => {
    const inst = await fleet.add();
    await deployExpecting(inst, paramsFor(inst, v1), 0);
    const [first, second] = await Promise.all([
      deployExpecting(inst, paramsFor(inst, v2), 0),
      new Promise((r) => setTimeout(r, 300)).then(() => deployExpecting(inst, paramsFor(inst, v2), 0)),
    ]);
    expect(first.result).to.include({ status: "deployed", version: "2.0.0" });
    expect(second.result).to.include({ status: "unchanged", version: "2.0.0" });
    expect(second.stdout).to.match(/already running here; waiting up to 300s/);
  });
});

/** The agent's pending marker lives in zcp's state dir, outside the app's tree. */
function pendingMarker(inst: LocalInstance): string {
  return path.join(instanceStateDir(inst), "pending");
}
