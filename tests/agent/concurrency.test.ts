/**
 * Two deploys on one instance never interleave: the second finds the lock held and exits 3
 * without touching anything.
 */
import { expect } from "chai";
import * as path from "node:path";
import { readVersion } from "../../deploy/local/fleet.js";
import { buildRelease, type BuiltRelease } from "../helpers/releases.js";
import { currentTarget, deployExpecting, deployLog, fleetForSuite, paramsFor } from "../helpers/supervisor.js";

describe("zcp-agent: concurrent deploys", function () {
  this.timeout(120000);
  const fleet = fleetForSuite("zcp-agent-lock");
  let v1: BuiltRelease;
  let v2: BuiltRelease;
  let v3: BuiltRelease;

  before(() => {
    const out = path.join(fleet.root, "artifacts");
    v1 = buildRelease(out, { version: "1.0.0" });
    v2 = buildRelease(out, { version: "2.0.0" });
    v3 = buildRelease(out, { version: "3.0.0" });
  });


  it("a second deploy while one runs exits 3 and touches nothing", async () => {
    const inst = await fleet.add();
    await deployExpecting(inst, paramsFor(inst, v1), 0);
    const logBefore = deployLog(inst).length;

    // The first holds the lock for at least the restart (supervisor's startsecs); the second
    // starts well inside that window.
    const [winner, second] = await Promise.all([
      deployExpecting(inst, paramsFor(inst, v2), 0),
      new Promise((r) => setTimeout(r, 300)).then(() => deployExpecting(inst, paramsFor(inst, v3), 3)),
    ]);

    expect(second.result).to.include({ status: "failed", version: "3.0.0", reason: "locked" });
    expect(winner.result).to.include({ status: "deployed", version: "2.0.0", previous: "1.0.0" });
    // One deploy, one log line: the refused one wrote nothing.
    const log = deployLog(inst).slice(logBefore);
    expect(log.map((l) => `${l.status} ${l.version}`)).to.deep.equal(["deployed 2.0.0"]);
    expect(currentTarget(inst)).to.equal("releases/2.0.0");
    expect((await readVersion(inst))?.version).to.equal("2.0.0");
  });

  it("deploys that follow each other both run, in order", async () => {
    const inst = await fleet.add();
    const runs = [];
    for (const release of [v1, v2, v3]) runs.push(await deployExpecting(inst, paramsFor(inst, release), 0));

    expect(runs.map((r) => r.result?.previous ?? null)).to.deep.equal([null, "1.0.0", "2.0.0"]);
    expect(deployLog(inst).map((l) => l.version)).to.deep.equal(["1.0.0", "2.0.0", "3.0.0"]);
  });
});
