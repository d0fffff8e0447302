/**
 * Hostile or malformed inputs: the agent refuses them with exit 2 before it touches
 * anything, and never runs what they smuggle in.
 */
import { expect } from "chai";
import * as fs from "node:fs";
import * as path from "node:path";
import { readVersion, runAgent, servicePid, type LocalInstance } from "../../deploy/local/fleet.js";
import { agentEnvironment } from "../../deploy/transport.js";
import { HOSTILE_INPUTS, type HostileInput } from "../fixtures/agent/hostile-inputs.js";
import { buildRelease, type BuiltRelease } from "../helpers/releases.js";
import { deployExpecting, fleetForSuite, paramsFor, snapshotTree } from "../helpers/supervisor.js";

describe("zcp-agent: input validation", function () {
  this.timeout(60000);
  const fleet = fleetForSuite("zcp-agent-validation");
  let v1: BuiltRelease;
  let v2: BuiltRelease;
  let deployed: LocalInstance;
  let fresh: LocalInstance;
  let marker: string;

  before(async () => {
    const out = path.join(fleet.root, "artifacts");
    v1 = buildRelease(out, { version: "1.0.0" });
    v2 = buildRelease(out, { version: "2.0.0" });
    marker = path.join(fleet.root, "injected");
    deployed = await fleet.add();
    await deployExpecting(deployed, paramsFor(deployed, v1), 0);
    fresh = await fleet.add();
  });


  function hostileEnv(inst: LocalInstance, input: HostileInput): Record<string, string> {
    const env: Record<string, string> = { ...agentEnvironment(paramsFor(inst, v2)), ZCP_SUPERVISOR_CONF: inst.supervisorConf };
    const fill = (v: string) => v.replaceAll("{{MARKER}}", marker).replaceAll("{{ROOT}}", fleet.root);
    if (input.value === undefined) delete env[input.variable];
    else env[input.variable] = fill(input.value);
    return env;
  }

  for (const input of HOSTILE_INPUTS) {
    it(`rejects ${input.name} (${input.variable}) with exit 2 and no side effect`, async () => {
      const before = snapshotTree(deployed.appDir);
      const pid = (await readVersion(deployed))?.pid;

      const onDeployed = await runAgent(deployed, hostileEnv(deployed, input), { timeoutMs: 30000 });
      const onFresh = await runAgent(fresh, hostileEnv(fresh, input), { timeoutMs: 30000 });

      for (const run of [onDeployed, onFresh]) {
        expect(run.exitCode, run.stderr).to.equal(2);
        expect(run.result?.status).to.equal("failed");
        expect(run.result?.reason).to.equal("rejected");
        // The result is the last line and valid JSON whatever the input held.
        expect(JSON.parse(run.stdout.trimEnd().split("\n").at(-1) ?? "")).to.have.property("duration_ms");
      }
      expect(fs.existsSync(marker), "injected command ran").to.equal(false);
      expect(snapshotTree(deployed.appDir)).to.deep.equal(before);
      expect((await readVersion(deployed))?.pid, "the app was restarted").to.equal(pid);
      expect(fs.existsSync(fresh.appDir), "app dir created on a fresh instance").to.equal(false);
    });
  }

  it("the instance still serves the version it had", async () => {
    expect(await servicePid(deployed)).to.be.a("number");
    expect((await readVersion(deployed))?.version).to.equal("1.0.0");
  });
});
