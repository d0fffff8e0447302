/**
 * The local fleet: instances on one machine, each with its own supervisord, port and app
 * dir, deployed independently by the same agent.
 */
import { expect } from "chai";
import * as fs from "node:fs";
import * as path from "node:path";
import {
  listInstances,
  loadInstance,
  readVersion,
  servicePid,
  stopSupervisor,
  supervisorPid,
} from "../../deploy/local/fleet.js";
import { buildRelease, type BuiltRelease } from "../helpers/releases.js";
import { deployExpecting, fleetForSuite, paramsFor } from "../helpers/supervisor.js";

describe("local fleet", function () {
  this.timeout(120000);
  const fleet = fleetForSuite("zcp-fleet");
  let v1: BuiltRelease;
  let v2: BuiltRelease;

  before(() => {
    const out = path.join(fleet.root, "artifacts");
    v1 = buildRelease(out, { version: "1.0.0" });
    v2 = buildRelease(out, { version: "2.0.0" });
  });


  it("deploys instances in parallel, each to its own port and app dir", async () => {
    const a = await fleet.add("i-0aaaaaaaaaaaaaaa1");
    const b = await fleet.add("i-0bbbbbbbbbbbbbbb2");
    expect(a.port).to.not.equal(b.port);
    expect(supervisorPid(a)).to.not.equal(supervisorPid(b));

    const [ra, rb] = await Promise.all([
      deployExpecting(a, paramsFor(a, v1), 0),
      deployExpecting(b, paramsFor(b, v2), 0),
    ]);

    expect(ra.result?.instance).to.equal("i-0aaaaaaaaaaaaaaa1");
    expect(rb.result?.instance).to.equal("i-0bbbbbbbbbbbbbbb2");
    expect((await readVersion(a))?.version).to.equal("1.0.0");
    expect((await readVersion(b))?.version).to.equal("2.0.0");
    expect(fs.readlinkSync(path.join(a.appDir, "current"))).to.equal("releases/1.0.0");
    expect(fs.readlinkSync(path.join(b.appDir, "current"))).to.equal("releases/2.0.0");
  });

  it("loadInstance and listInstances read back what createInstance wrote", async () => {
    const inst = await fleet.add("i-0ccccccccccccccc3");
    const loaded = loadInstance(fleet.root, inst.id);
    expect(loaded).to.deep.equal(inst);
    expect(listInstances(fleet.root).map((i) => i.id)).to.include(inst.id);
  });

  it("stopSupervisor stops that instance's supervisord and app, and no other", async () => {
    const a = await fleet.add();
    const b = await fleet.add();
    await Promise.all([deployExpecting(a, paramsFor(a, v1), 0), deployExpecting(b, paramsFor(b, v1), 0)]);
    const supervisord = supervisorPid(a);
    const app = await servicePid(a);
    expect(supervisord).to.be.a("number");
    expect(app).to.be.a("number");

    await stopSupervisor(a);

    expect(supervisorPid(a)).to.equal(undefined);
    expect(fs.existsSync(`/proc/${supervisord}`)).to.equal(false);
    expect(fs.existsSync(`/proc/${app}`)).to.equal(false);
    expect(await readVersion(a)).to.equal(undefined);
    expect((await readVersion(b))?.version).to.equal("1.0.0");
  });
});
