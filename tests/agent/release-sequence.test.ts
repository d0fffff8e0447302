/**
 * The agent records which release it installed, with latest.json's sequence, in its
 * root-owned state dir once the release is healthy: boot converge (the launch template's user
 * data, tests/unit/user-data.test.ts) reads that record and never moves the instance, or an
 * instance booted from an image baked from it, to an older pointer.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { expect } from "chai";
import { instanceStateDir, type LocalInstance } from "../../deploy/local/fleet.js";
import { buildRelease, type BuiltRelease } from "../helpers/releases.js";
import { deployExpecting, fleetForSuite, paramsFor } from "../helpers/supervisor.js";

describe("zcp-agent: the release sequence", function () {
  this.timeout(180000);
  const fleet = fleetForSuite("zcp-agent-seq");
  let v1: BuiltRelease;
  let v2: BuiltRelease;
  let broken: BuiltRelease;

  before(() => {
    const out = path.join(fleet.root, "artifacts");
    v1 = buildRelease(out, { version: "1.0.0" });
    v2 = buildRelease(out, { version: "2.0.0" });
    broken = buildRelease(out, { version: "3.0.0", broken: true });
  });


  const record = (inst: LocalInstance) => {
    const file = path.join(instanceStateDir(inst), "sequence");
    return fs.existsSync(file) ? fs.readFileSync(file, "utf8") : undefined;
  };

  it("records sequence and version once healthy, keeps them through a failed release, and forgets them on a deploy without one", async () => {
    const inst = await fleet.add();
    await deployExpecting(inst, paramsFor(inst, v1, { sequence: 4 }), 0);
    expect(record(inst)).to.equal("4 1.0.0\n");

    // An unhealthy release the agent rolls back: the record still describes what runs.
    const failed = await deployExpecting(inst, paramsFor(inst, broken, { sequence: 5 }), 1);
    expect(failed.result).to.include({ status: "rolled_back" });
    expect(record(inst)).to.equal("4 1.0.0\n");

    // Already current: a later release of the same version (a re-release) records its sequence.
    const same = await deployExpecting(inst, paramsFor(inst, v1, { sequence: 6 }), 0);
    expect(same.result).to.include({ status: "unchanged" });
    expect(record(inst)).to.equal("6 1.0.0\n");

    // A deploy that names no sequence leaves no record that would describe an older release.
    await deployExpecting(inst, paramsFor(inst, v2), 0);
    expect(record(inst)).to.equal(undefined);
  });

  it("refuses a sequence that is not a whole number, touching nothing", async () => {
    const inst = await fleet.add();
    const run = await deployExpecting(inst, paramsFor(inst, v1), 2, { ZCP_SEQUENCE: "7;reboot" });
    expect(run.result).to.include({ status: "failed", reason: "rejected" });
    expect(run.stderr).to.contain("ZCP_SEQUENCE must be a release sequence");
    expect(record(inst)).to.equal(undefined);
  });
});
