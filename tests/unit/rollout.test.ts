/**
 * The rollout algorithm on its own, with a transport that plays the agent's part.
 */
import { expect } from "chai";
import { planBatches, rollout, type RolloutDeps } from "../../deploy/steps/rollout.js";
import type { AgentParams, InstanceOutcome, Transport } from "../../deploy/transport.js";
import { ReleaseFailedError } from "../../shared/errors.js";

const PREVIOUS_SHA = "a".repeat(64);
const NEW_SHA = "b".repeat(64);

/** Instances that run `version`; those in `broken` fail the new version's health check. */
function fakeFleet(ids: string[], broken: Set<string>) {
  const running = new Map(ids.map((id) => [id, "v1"]));
  const sent: { ids: string[]; version: string; sha256: string }[] = [];
  const transport: Transport = {
    kind: "local",
    async runAgent(batch, params: AgentParams): Promise<InstanceOutcome[]> {
      sent.push({ ids: [...batch], version: params.version, sha256: params.sha256 });
      return batch.map((id) => {
        const previous = running.get(id) ?? null;
        const fails = broken.has(id) && params.version !== "v1";
        if (!fails) running.set(id, params.version);
        const status = fails ? "rolled_back" : "deployed";
        return {
          instanceId: id,
          ok: !fails,
          status,
          result: { status, version: params.version, previous, previous_sha256: PREVIOUS_SHA, duration_ms: 10 },
          message: `${status} ${params.version}`,
          durationMs: 10,
        };
      });
    },
  };
  return { transport, running, sent };
}

function deps(transport: Transport, paramsFor: RolloutDeps["paramsFor"]): RolloutDeps {
  return { transport, paramsFor, sleep: async () => undefined, now: () => 0, log: () => undefined };
}

const params = (version: string, sha256: string): AgentParams => ({
  app: "web",
  version,
  artifact: `s3://bucket/releases/web/${version}.tar.gz`,
  sha256,
  appDir: "/opt/web",
  appUser: "web",
  service: "web",
  processManager: "supervisor",
  healthUrl: "http://127.0.0.1:8080/health",
  healthTimeoutS: 5,
  keepReleases: 3,
});

describe("rollout", function () {
  it("plans a canary, then batches sized from the whole fleet", function () {
    const ids = ["i1", "i2", "i3", "i4", "i5", "i6", "i7", "i8"];
    expect(planBatches(ids, 1, "25%")).to.deep.equal([["i1"], ["i2", "i3"], ["i4", "i5"], ["i6", "i7"], ["i8"]]);
    expect(planBatches(ids, 0, "3")).to.deep.equal([["i1", "i2", "i3"], ["i4", "i5", "i6"], ["i7", "i8"]]);
  });

  it("rolls switched instances back with the checksum they verified when the old artifact has left the bucket", async function () {
    const ids = ["i1", "i2", "i3"];
    const fleet = fakeFleet(ids, new Set(["i3"]));
    const asked: { version: string; knownSha256: string | undefined }[] = [];
    const paramsFor = async (version: string, knownSha256?: string) => {
      asked.push({ version, knownSha256 });
      if (version === "v2") return params("v2", NEW_SHA);
      // The bucket no longer has v1: only the instances' own record of it can help.
      if (!knownSha256) throw new Error("v1's artifact is gone");
      return params("v1", knownSha256);
    };
    let caught: unknown;
    try {
      await rollout(ids, "v2", { canary: 1, batch: "2", soakSeconds: 0, maxErrors: 0, commandTimeoutS: 60 }, deps(fleet.transport, paramsFor));
    } catch (err) {
      caught = err;
    }
    expect(caught).to.be.instanceOf(ReleaseFailedError);
    expect((caught as Error).message).to.match(/failed in batch 2\/2/);
    expect(asked).to.deep.include({ version: "v1", knownSha256: PREVIOUS_SHA });
    const rollback = fleet.sent.find((s) => s.version === "v1");
    expect(rollback?.ids.sort()).to.deep.equal(["i1", "i2"]);
    expect(rollback?.sha256).to.equal(PREVIOUS_SHA);
    expect([...fleet.running.values()]).to.deep.equal(["v1", "v1", "v1"]);
  });

  it("stops at the failed canary without touching the rest of the fleet", async function () {
    const ids = ["i1", "i2", "i3"];
    const fleet = fakeFleet(ids, new Set(["i1"]));
    const paramsFor = async (version: string) => params(version, version === "v2" ? NEW_SHA : PREVIOUS_SHA);
    let caught: unknown;
    try {
      await rollout(ids, "v2", { canary: 1, batch: "2", soakSeconds: 0, maxErrors: 0, commandTimeoutS: 60 }, deps(fleet.transport, paramsFor));
    } catch (err) {
      caught = err;
    }
    expect((caught as Error).message).to.match(/failed in canary/);
    expect(fleet.sent.map((s) => s.ids)).to.deep.equal([["i1"]]);
  });

  it("sends no rollback to an instance whose agent failed before the switch and reports its old release still current", async function () {
    // The canary's fetch fails (the bucket is unreachable): the agent exits 1 with status
    // `failed`, and its result line says v1 is still current. Rolling it "back" would need
    // v1's artifact from the same unreachable bucket and would turn a clean stop into an error.
    const ids = ["i1", "i2", "i3"];
    const sent: string[] = [];
    const transport: Transport = {
      kind: "local",
      async runAgent(batch, p: AgentParams): Promise<InstanceOutcome[]> {
        sent.push(`${p.version}:${batch.join(",")}`);
        return batch.map((id) => ({
          instanceId: id,
          ok: false,
          status: "failed",
          exitCode: 1,
          result: { status: "failed", version: p.version, previous: "v1", current: "v1", duration_ms: 5 },
          message: `fetching s3://bucket/releases/web/${p.version}.tar.gz failed; v1 is still current`,
          durationMs: 5,
        }));
      },
    };
    const paramsFor = async (version: string) => {
      if (version === "v1") throw new Error("v1's artifact cannot be read");
      return params(version, NEW_SHA);
    };
    let caught: unknown;
    try {
      await rollout(ids, "v2", { canary: 1, batch: "2", soakSeconds: 0, maxErrors: 0, commandTimeoutS: 60 }, deps(transport, paramsFor));
    } catch (err) {
      caught = err;
    }
    expect(caught).to.be.instanceOf(ReleaseFailedError);
    expect((caught as Error).message).to.match(/failed in canary/);
    expect(sent).to.deep.equal(["v2:i1"]);
  });
});
