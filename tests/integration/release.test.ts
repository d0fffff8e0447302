/**
 * zcp's main job, end to end on the real parts: the real Pulumi engine (file backend), the
 * AWS emulator, three local instances each with its own supervisord running the example app,
 * the real agent script, real HTTP health checks.
 */
import { expect } from "chai";
import * as fs from "node:fs";
import * as path from "node:path";
import { closedPort, collect, waitFor, ZcpHarness } from "../helpers/zcp.js";
import { REPO_ROOT } from "../helpers/emulator.js";
import { RELEASE_PROJECT } from "../../shared/naming.js";
import { makeBrokenSource } from "../fixtures/release/sources.js";
import { pulumiRecorder } from "../fixtures/release/pulumi-recorder.js";

function allAt(versions: Record<string, string>, v: string): boolean {
  return Object.values(versions).length > 0 && Object.values(versions).every((x) => x === v);
}

describe("zcp release on the local environment (real engine, emulator, supervisord, agent)", function () {
  const zcp = new ZcpHarness(3);
  after(async () => zcp.teardown());

  it("v1 healthy → broken v2 rolled back at the canary → v3 everywhere, image baked, image parameter and latest moved", async function () {
    const v1 = await zcp.run(["release", "--env", "local", "--version", "v1"]);
    expect(v1.code, v1.stderr).to.equal(0);
    expect(allAt(await zcp.versions(), "v1"), JSON.stringify(await zcp.versions())).to.equal(true);
    const latest1 = await zcp.latest();
    expect(latest1?.body.version).to.equal("v1");
    const parameter1 = await zcp.imageParameter();
    expect(parameter1.imageId).to.equal(latest1?.body.imageId);

    // A preview names what would change and changes nothing.
    const pv = await zcp.run(["preview", "--env", "local", "--version", "v2", "--json"]);
    expect(pv.code, pv.stderr).to.equal(0);
    const p = JSON.parse(pv.stdout) as { versionFrom: string; versionTo: string; steps: { resource: string; op: string; changed: string[] }[] };
    expect(p).to.include({ versionFrom: "v1", versionTo: "v2" });
    expect(p.steps.find((st) => st.resource === "FleetDeployment")).to.deep.include({ op: "update" });
    expect(p.steps.find((st) => st.resource === "BakedImage")?.op).to.equal("replace");
    expect((await zcp.latest())?.etag).to.equal(latest1?.etag);
    expect(allAt(await zcp.versions(), "v1")).to.equal(true);

    const broken = makeBrokenSource();
    let v2;
    try {
      v2 = await zcp.run(["release", "--env", "local", "--version", "v2", "--source", broken]);
    } finally {
      fs.rmSync(broken, { recursive: true, force: true });
    }
    expect(v2.code, v2.stdout + v2.stderr).to.equal(1);
    expect(v2.stderr).to.match(/release v2 failed in canary/);
    expect(v2.stderr).to.match(/rolled_back/);
    expect(allAt(await zcp.versions(), "v1")).to.equal(true);
    const latest2 = await zcp.latest();
    expect(latest2?.body.version).to.equal("v1");
    expect(latest2?.etag).to.equal(latest1?.etag);
    expect(await zcp.imageParameter()).to.deep.equal(parameter1);

    const stepSummary = path.join(zcp.workDir, "step-summary.md");
    const v3 = await zcp.run(["release", "--env", "local", "--version", "v3", "--json"], { GITHUB_STEP_SUMMARY: stepSummary });
    expect(v3.code, v3.stderr).to.equal(0);
    const md = fs.readFileSync(stepSummary, "utf8");
    expect(md).to.match(/### zcp: local released v3/);
    expect(md).to.match(/\| instance \| batch \| status \|/);
    const summary = JSON.parse(v3.stdout) as { version: string; imageId: string; imageParameterVersion: number; previousImageId: string; instances: unknown[] };
    expect(summary.version).to.equal("v3");
    expect(summary.instances).to.have.length(3);
    expect(allAt(await zcp.versions(), "v3")).to.equal(true);
    const latest3 = await zcp.latest();
    expect(latest3?.body).to.include({ version: "v3", previous: "v1", imageId: summary.imageId });
    // New instances launch the v3 image: the parameter the template resolves names it.
    const parameter3 = await zcp.imageParameter();
    expect(parameter3).to.deep.equal({ version: summary.imageParameterVersion, imageId: summary.imageId });
    expect(parameter3.version).to.be.greaterThan(parameter1.version);
    expect(summary.previousImageId).to.equal(parameter1.imageId);
    expect(await zcp.imageTags(summary.imageId)).to.include({ "zcp:app": "example", "zcp:env": "local", "zcp:version": "v3" });

    const history = await zcp.run(["history", "--env", "local", "--json"]);
    expect(history.code, history.stderr).to.equal(0);
    const entries = JSON.parse(history.stdout) as { message: string; result: string }[];
    const releases = entries.filter((e) => /^release /.test(e.message)).map((e) => `${e.message}:${e.result}`);
    expect(releases).to.include.members(["release v1:succeeded", "release v2:failed", "release v3:succeeded"]);

    const status = await zcp.run(["status", "--env", "local", "--json"]);
    expect(status.code, status.stderr).to.equal(0);
    const s = JSON.parse(status.stdout) as { latest: { version: string }; imageParameter: { name: string; version: number; imageId: string }; instances: { version: string }[] };
    expect(s.latest.version).to.equal("v3");
    expect(s.imageParameter).to.deep.equal({ name: "/zcp/example/local/image-id", ...parameter3 });
    expect(s.instances.map((i) => i.version)).to.deep.equal(["v3", "v3", "v3"]);
  });

  it("rollback returns the fleet and latest to the previous version without packaging", async function () {
    const keysBefore = await zcp.objectKeys();
    const r = await zcp.run(["rollback", "--env", "local"]);
    expect(r.code, r.stderr).to.equal(0);
    expect(allAt(await zcp.versions(), "v1")).to.equal(true);
    const latest = await zcp.latest();
    expect(latest?.body.version).to.equal("v1");
    // New instances boot the v1 image again: the parameter moved back to the image v1 released with.
    expect((await zcp.imageParameter()).imageId).to.equal(latest?.body.imageId);
    expect(await zcp.imageTags(String(latest?.body.imageId))).to.include({ "zcp:version": "v1" });
    // Only latest.json changed: no artifact was packaged or uploaded.
    const changed = (await zcp.objectKeys()).filter((k) => !keysBefore.includes(k));
    expect(changed.every((k) => k.startsWith("releases/example/latest.json@"))).to.equal(true);
  });

  it("preview decrypts nothing: a release stack whose secrets provider is an awskms key that cannot be reached (stand-in: an unknown key, KMS on a closed 127.0.0.1 port) previews the same steps and is not written", async function () {
    const args = ["preview", "--env", "local", "--version", "v4", "--json"];
    const plain = await zcp.run(args);
    expect(plain.code, plain.stderr).to.equal(0);
    const stepsOf = (stdout: string) => (JSON.parse(stdout) as { steps: unknown[] }).steps;
    expect(stepsOf(plain.stdout)).to.not.deep.equal([]);

    // As a state on S3 looks: Pulumi's awskms provider ("cloud") with the data key it would
    // have to decrypt before reading anything else (pulumi/pulumi pkg/secrets/cloud/manager.go).
    const checkpoint = path.join(zcp.workDir, "local", "pulumi-state", ".pulumi", "stacks", RELEASE_PROJECT, "local.json");
    const original = fs.readFileSync(checkpoint);
    const state = JSON.parse(original.toString("utf8")) as { checkpoint: { latest: { secrets_providers?: unknown } } };
    state.checkpoint.latest.secrets_providers = {
      type: "cloud",
      state: { url: "awskms:///arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-00000000dead?region=us-east-1", encryptedkey: Buffer.alloc(184, 7).toString("base64") },
    };
    const kmsOnly = Buffer.from(JSON.stringify(state));
    fs.writeFileSync(checkpoint, kmsOnly);
    const closed = await closedPort();
    try {
      const r = await zcp.run(args, {
        AWS_ENDPOINT_URL_KMS: `http://127.0.0.1:${closed}`,
        // Should anything ignore the KMS endpoint, it still reaches nothing beyond 127.0.0.1.
        HTTPS_PROXY: `http://127.0.0.1:${closed}`,
        HTTP_PROXY: `http://127.0.0.1:${closed}`,
        NO_PROXY: "127.0.0.1,localhost",
      });
      expect(r.code, r.stderr).to.equal(0);
      expect(stepsOf(r.stdout)).to.deep.equal(stepsOf(plain.stdout));
      expect(fs.readFileSync(checkpoint).equals(kmsOnly), "the real stack's state was rewritten by a preview").to.equal(true);
    } finally {
      fs.writeFileSync(checkpoint, original);
    }
  });

  it("a release of an existing stack runs one Pulumi command, `up`: no version check, stack select, outputs or history read", async function () {
    const recorder = pulumiRecorder();
    try {
      // The runner puts the project's tools first on PATH unless they are there already.
      const tools = [path.join(REPO_ROOT, ".tools", "bin"), path.join(REPO_ROOT, ".tools", "node", "bin")];
      const env = { PATH: [recorder.binDir, ...tools, process.env.PATH ?? ""].join(path.delimiter) };
      // The first run through a CLI the runner has not seen asks for its version once.
      const first = await zcp.run(["release", "--env", "local", "--version", "r1"], env);
      expect(first.code, first.stderr).to.equal(0);
      recorder.clear();
      const second = await zcp.run(["release", "--env", "local", "--version", "r2", "--json"], env);
      expect(second.code, second.stderr).to.equal(0);
      expect(recorder.commands().map((c) => c.slice(0, 2).join(" "))).to.deep.equal(["up --yes"]);
      // The summary still carries the stack's outputs, now taken from the engine's events.
      const summary = JSON.parse(second.stdout) as { version: string; imageId: string; instances: unknown[]; fleetDurationMs: number };
      expect(summary.version).to.equal("r2");
      expect(summary.imageId).to.match(/^ami-/);
      expect(summary.instances).to.have.length(3);
      expect(summary.fleetDurationMs).to.be.greaterThan(0);
      expect(allAt(await zcp.versions(), "r2")).to.equal(true);
    } finally {
      recorder.remove();
    }
  });

  it("a second release of the same environment exits 3 naming the lock holder, and changes nothing", async function () {
    const first = zcp.spawn(["release", "--env", "local", "--version", "v4"]);
    const firstDone = collect(first);
    const lockRoot = path.join(zcp.workDir, "local", "pulumi-state", ".pulumi", "locks");
    await waitFor("the first release to take the stack lock", () => hasFile(lockRoot), 90000);
    const keysBefore = await zcp.objectKeys();
    const second = await zcp.run(["release", "--env", "local", "--version", "v5"]);
    expect(second.code, second.stderr).to.equal(3);
    expect(second.stderr).to.match(/another release of "local" is in progress \(lock held by .+pid \d+/);
    expect((await zcp.objectKeys()).filter((k) => k.includes("v5"))).to.deep.equal([]);
    void keysBefore;
    const done = await firstDone;
    expect(done.code, done.stderr).to.equal(0);
    expect(allAt(await zcp.versions(), "v4")).to.equal(true);
  });

  it("a runner killed during FleetDeployment leaves no instance half-switched; the next release recovers and completes", async function () {
    const victim = zcp.spawn(["release", "--env", "local", "--version", "v6"]);
    const victimDone = collect(victim);
    const releaseDir = path.join(zcp.workDir, "release", "local");
    await waitFor(
      "FleetDeployment to start",
      () =>
        fs.existsSync(releaseDir) &&
        fs
          .readdirSync(releaseDir)
          .filter((f) => f.startsWith("progress-"))
          .some((f) => fs.readFileSync(path.join(releaseDir, f), "utf8").includes('"step":"FleetDeployment","state":"start"')),
      90000,
    );
    process.kill(-(victim.pid as number), "SIGKILL");
    await victimDone;
    // The engine's provider host lives in a process group of its own; it must notice the
    // runner is gone and stop instead of idling (or finishing steps) forever.
    const workspace = path.join(zcp.workDir, "release", "local");
    await waitFor("the orphaned provider host to stop", () => processesIn(workspace).length === 0, 15000);
    // Whatever the agents were doing, each instance ends on a whole release: v4 or v6, healthy.
    await new Promise((r) => setTimeout(r, 8000));
    for (const v of Object.values(await zcp.versions())) expect(["v4", "v6"]).to.include(v);

    const next = await zcp.run(["release", "--env", "local", "--version", "v6"]);
    expect(next.code, next.stdout + next.stderr).to.equal(0);
    expect(next.stdout).to.match(/recovered:/);
    expect(allAt(await zcp.versions(), "v6")).to.equal(true);
    expect((await zcp.latest())?.body.version).to.equal("v6");
  });

  describe("bad input exits 2 and changes nothing", function () {
    async function snapshot() {
      return {
        objects: await zcp.objectKeys(),
        versions: await zcp.versions(),
        template: await zcp.imageParameter(),
        history: (JSON.parse((await zcp.run(["history", "--env", "local", "--json"])).stdout) as unknown[]).length,
      };
    }
    const cases: [string, string[], Record<string, string>, RegExp][] = [
      ["a hostile version", ["release", "--env", "local", "--version", "1.0;touch /tmp/zcp-pwned"], {}, /--version: must match/],
      ["a version with a newline", ["release", "--env", "local", "--version", "v7\nv8"], {}, /--version: must not contain control characters/],
      ["an unknown environment", ["release", "--env", "staging", "--version", "v7"], { ZCP_PROJECT_DIR: REPO_ROOT }, /--env: unknown environment "staging"/],
      ["the wrong account", ["release", "--env", "local", "--version", "v7"], { ZCP_LOCAL_ACCOUNT_ID: "210987654321" }, /configured for AWS account 210987654321, but the current credentials belong to 123456789012/],
      ["a batch of 0%", ["release", "--env", "local", "--version", "v7", "--batch", "0%"], {}, /--batch: must be 1\.\.100% or a count, got "0%"/],
      ["rollback to a version never released", ["rollback", "--env", "local", "--to", "v99"], {}, /--to: no artifact for version v99/],
    ];
    for (const [what, args, extra, message] of cases) {
      it(what, async function () {
        const before = await snapshot();
        const r = await zcp.run(args, extra);
        expect(r.code, r.stderr).to.equal(2);
        expect(r.stderr).to.match(message);
        expect(await snapshot()).to.deep.equal(before);
        expect(fs.existsSync("/tmp/zcp-pwned")).to.equal(false);
      });
    }
  });
});

/** Pids of processes whose working directory is `dir` (Linux /proc). */
function processesIn(dir: string): number[] {
  const pids: number[] = [];
  for (const entry of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (fs.readlinkSync(`/proc/${entry}/cwd`).replace(/ \(deleted\)$/, "") === dir) pids.push(Number(entry));
    } catch {
      // gone, or not ours to read
    }
  }
  return pids;
}

function hasFile(dir: string): boolean {
  if (!fs.existsSync(dir)) return false;
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    if (e.isFile() && e.name.endsWith(".json")) return true;
    if (e.isDirectory() && hasFile(path.join(dir, e.name))) return true;
  }
  return false;
}
