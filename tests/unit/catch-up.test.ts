/**
 * Instances that join the fleet while a release runs, and the fleet's previous release as the
 * rollback target: the FleetDeployment and LatestPointer steps, the same code the engine's
 * provider host runs, against the SSM simulator (the ssm transport, simulated time), the EC2
 * simulator (DescribeInstances, instances launched mid-release) and a mocked S3 holding
 * latest.json. Nothing leaves the process.
 */
import { expect } from "chai";
import { EC2Client } from "@aws-sdk/client-ec2";
import { GetObjectCommand, HeadObjectCommand, PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { SSMClient } from "@aws-sdk/client-ssm";
import { STSClient } from "@aws-sdk/client-sts";
import { mockClient } from "aws-sdk-client-mock";
import { deployFleet } from "../../deploy/steps/fleet-deployment.js";
import { promoteLatestPointer } from "../../deploy/steps/latest-pointer.js";
import { releaseTemplate } from "../../deploy/steps/launch-template-release.js";
import { parseLatestPointer, serializeLatestPointer, type LatestPointer } from "../../deploy/aws/latest-pointer.js";
import { SsmTransport } from "../../deploy/transports/ssm.js";
import type { AwsClients } from "../../deploy/aws/clients.js";
import type { StepEnv } from "../../deploy/steps/context.js";
import type { CatchUpSpec, FleetDeploymentInputs, LatestPointerInputs } from "../../deploy/steps/types.js";
import { ReleaseFailedError } from "../../shared/errors.js";
import { fakeClock, offlineAutoScaling, offlineCloudWatch, offlineEc2, offlineElb, offlineS3, offlineSsm } from "../fixtures/aws/clients.js";
import { ec2ImageSimulator } from "../fixtures/aws/ec2-image-simulator.js";
import { simulateSsm, type AgentPlan, type AgentRunContext } from "../fixtures/aws/ssm-simulator.js";
import { SHOP_RUNTIME } from "../fixtures/release/sim-release.js";

const APP = "shop";
const ENV = "prod";
const BUCKET = "zcp-artifacts";
const TAGS = { "zcp:app": APP, "zcp:env": ENV };
const A = "i-0000000000000000a";
const B = "i-0000000000000000b";
const C = "i-0000000000000000c";
const D = "i-0000000000000000d";
const SHA = { v1: "1".repeat(64), v2: "2".repeat(64) };
const NEW_IMAGE = "ami-0000000000000new2";
/** latest.json when the release started: v1, the app's 4th release. */
const V1_POINTER: LatestPointer = { version: "v1", key: `releases/${APP}/v1.tar.gz`, sha256: SHA.v1, releasedAt: "2026-12-01T10:00:00Z", sequence: 4 };

function fleetInputs(overrides: Partial<FleetDeploymentInputs> = {}): FleetDeploymentInputs {
  return {
    app: APP,
    environment: ENV,
    region: "us-east-1",
    version: "v2",
    sha256: SHA.v2,
    bucket: BUCKET,
    artifactKey: `releases/${APP}/v2.tar.gz`,
    runtime: SHOP_RUNTIME,
    canary: 1,
    batch: "50%",
    soakSeconds: 30,
    maxErrors: 0,
    commandTimeoutS: 600,
    transport: { kind: "ssm", documentName: "zcp-shop-prod-deploy" },
    traffic: { kind: "none" },
    minHealthyPercent: 0,
    alarmNames: [],
    ...overrides,
  };
}

type Fault = "unhealthy" | "killed" | "booting";

/** A fleet on v1 in both simulators, latest.json naming v1, and the steps' environment. */
function world(ids: string[], faults: Record<string, Fault> = {}) {
  const clock = fakeClock();
  const ssm = offlineSsm();
  let bootConverges = 2;
  const agent = (ctx: AgentRunContext): AgentPlan => {
    // Its user data's converge to v1 holds the agent's lock for the first two tries.
    if (faults[ctx.instanceId] === "booting" && bootConverges-- > 0) return { runMs: 200, end: "locked", message: "another deploy holds the lock" };
    if (ctx.instance.version === ctx.version) return { runMs: 1_000, end: "unchanged" };
    if (ctx.version === "v2" && faults[ctx.instanceId] === "unhealthy") return { runMs: 40_000, end: "rolled_back" };
    // Switched, then never healthy within the execution timeout: SIGKILL, no result line.
    if (ctx.version === "v2" && faults[ctx.instanceId] === "killed") return { runMs: 10_000_000, switchAtMs: 20_000, end: "deployed" };
    return { runMs: 30_000, end: "deployed" };
  };
  const { sim, mock: ssmMock } = simulateSsm(ssm, { now: clock.now, instances: Object.fromEntries(ids.map((id) => [id, { version: "v1", tags: TAGS }])), agent });
  const ec2 = offlineEc2();
  const ec2Sim = ec2ImageSimulator(ec2, { now: clock.now, availableAfterMs: 0, instances: ids.map((instanceId) => ({ instanceId, tags: TAGS, imageId: "ami-0000000000000old1" })) });
  const s3 = offlineS3();
  const s3Mock = mockClient(s3);
  /** Every S3 write and every SendCommand, in order. */
  const events: string[] = [];
  let latest = serializeLatestPointer(V1_POINTER);
  s3Mock.on(GetObjectCommand).callsFake(() => ({ Body: { transformToString: async () => latest }, ETag: '"etag-v1"' }));
  s3Mock.on(HeadObjectCommand).callsFake((input: { Key?: string }) => {
    const version = /\/(v[0-9])\.tar\.gz$/.exec(input.Key ?? "")?.[1] as keyof typeof SHA | undefined;
    if (!version) throw Object.assign(new Error("NotFound"), { name: "NotFound", $metadata: { httpStatusCode: 404 } });
    return { ContentLength: 100, ETag: '"x"', Metadata: { "zcp-sha256": SHA[version] } };
  });
  s3Mock.on(PutObjectCommand).callsFake((input: { Body?: string }) => {
    events.push("PutObject latest.json");
    latest = String(input.Body);
    return { ETag: '"etag-v2"' };
  });
  const clients: AwsClients = {
    ssm,
    ec2,
    s3,
    autoScaling: offlineAutoScaling(),
    elb: offlineElb(),
    cloudWatch: offlineCloudWatch(),
    sts: new STSClient({ region: "us-east-1", endpoint: "http://127.0.0.1:9", maxAttempts: 1 }),
  };
  const transport = new SsmTransport({
    ssm,
    sendCommandClient: ssm,
    documentName: "zcp-shop-prod-deploy",
    pacing: { sleep: clock.sleep, now: clock.now, random: clock.random, log: clock.log },
  });
  const tracked: StepEnv = {
    clients,
    transport: {
      kind: "ssm",
      runAgent: (targets, params, opts) => {
        events.push(`deploy ${params.version} (sequence ${params.sequence ?? "none"}) to ${targets.join(",")}`);
        return transport.runAgent(targets, params, opts);
      },
    },
    sleep: clock.sleep,
    now: clock.now,
  };
  return {
    sim,
    ec2Sim,
    env: tracked,
    events,
    latest: () => parseLatestPointer(latest, "latest.json"),
    restore: () => {
      s3Mock.restore();
      ec2Sim.restore();
      ssmMock.restore();
    },
  };
}

function pointerInputs(spec: CatchUpSpec | undefined, imageId = ""): LatestPointerInputs {
  return {
    region: "us-east-1",
    bucket: BUCKET,
    app: APP,
    version: "v2",
    key: `releases/${APP}/v2.tar.gz`,
    sha256: SHA.v2,
    imageId,
    launchTemplateVersion: 0,
    expectedEtag: '"etag-v1"',
    ...(spec ? { catchUp: spec } : {}),
  };
}

async function failureOf(work: Promise<unknown>): Promise<ReleaseFailedError> {
  const err = await work.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, "the step should fail").to.be.instanceOf(ReleaseFailedError);
  return err as ReleaseFailedError;
}

describe("instances that join the fleet while a release runs (SSM and EC2 simulators)", function () {
  it("an instance launched during the rollout gets the release before latest.json moves", async function () {
    const w = world([A, B]);
    try {
      const fleet = await deployFleet(fleetInputs(), w.env);
      expect(fleet.instances.map((i) => i.instanceId)).to.deep.equal([A, B]);
      // A scale-out while the image baked: C boots the old image and converges to v1.
      w.ec2Sim.launch({ instanceId: C, tags: TAGS, imageId: "ami-0000000000000old1" });
      w.sim.setInstance(C, { version: "v1", tags: TAGS });

      const out = await promoteLatestPointer(pointerInputs({ ...fleetInputs(), deployedInstances: [{ instanceId: A }, { instanceId: B }] }, NEW_IMAGE), w.env);
      expect(out.version).to.equal("v2");
      expect(w.sim.versions()).to.deep.equal({ [A]: "v2", [B]: "v2", [C]: "v2" });
      // C was deployed to first, with the sequence the pointer then carries.
      expect(w.events).to.deep.equal([
        `deploy v2 (sequence 5) to ${A}`,
        `deploy v2 (sequence 5) to ${B}`,
        `deploy v2 (sequence 5) to ${C}`,
        "PutObject latest.json",
      ]);
      expect(w.latest()).to.include({ version: "v2", previous: "v1", sequence: 5 });
    } finally {
      w.restore();
    }
  });

  it("an instance booted from the release's own image already runs it: nothing is sent to it", async function () {
    const w = world([A, B]);
    try {
      w.ec2Sim.launch({ instanceId: D, tags: TAGS, imageId: NEW_IMAGE });
      w.sim.setInstance(D, { version: "v2", tags: TAGS });
      await promoteLatestPointer(pointerInputs({ ...fleetInputs(), deployedInstances: [{ instanceId: A }, { instanceId: B }] }, NEW_IMAGE), w.env);
      expect(w.events).to.deep.equal(["PutObject latest.json"]);
    } finally {
      w.restore();
    }
  });

  it("a newcomer still running its boot converge (agent locked) gets the release once that run ended", async function () {
    const w = world([A, B], { [C]: "booting" });
    try {
      w.ec2Sim.launch({ instanceId: C, tags: TAGS, imageId: "ami-0000000000000old1" });
      w.sim.setInstance(C, { version: "v1", tags: TAGS });
      await promoteLatestPointer(pointerInputs({ ...fleetInputs(), deployedInstances: [{ instanceId: A }, { instanceId: B }] }, NEW_IMAGE), w.env);
      expect(w.sim.versions()[C]).to.equal("v2");
      expect(w.events).to.deep.equal([
        `deploy v2 (sequence 5) to ${C}`,
        `deploy v2 (sequence 5) to ${C}`,
        `deploy v2 (sequence 5) to ${C}`,
        "PutObject latest.json",
      ]);
    } finally {
      w.restore();
    }
  });

  it("a newcomer that fails its health check fails the release like a batch: latest.json stays where it was", async function () {
    const w = world([A, B], { [C]: "unhealthy" });
    try {
      w.ec2Sim.launch({ instanceId: C, tags: TAGS, imageId: "ami-0000000000000old1" });
      w.sim.setInstance(C, { version: "v1", tags: TAGS });
      const err = await failureOf(promoteLatestPointer(pointerInputs({ ...fleetInputs(), deployedInstances: [{ instanceId: A }, { instanceId: B }] }, NEW_IMAGE), w.env));
      expect(err.message).to.contain(`LatestPointer: v2 on the instance(s) that joined the fleet during the release (${C}) failed; nothing was moved`);
      expect(err.message).to.match(new RegExp(`${C} .*rolled_back`));
      expect(w.events).to.not.include("PutObject latest.json");
      expect(w.latest()).to.include({ version: "v1", sequence: 4 });
      expect(w.sim.versions()[C]).to.equal("v1");
    } finally {
      w.restore();
    }
  });
});

describe("FleetDeployment rolls back an instance with no result line to the fleet's previous release", function () {
  it("a canary killed after its switch goes back to the release latest.json names (it printed no previous of its own)", async function () {
    const w = world([A, B], { [A]: "killed" });
    try {
      const err = await failureOf(deployFleet(fleetInputs(), w.env));
      expect(err.message).to.match(/^release v2 failed in canary/);
      const row = err.message.split("\n").find((l) => l.includes(A) && l.includes("batch 0"));
      expect(row, err.message).to.match(/reverted .*rolled back to v1/);
      expect(err.message).to.not.contain("revert_unknown");
      expect(w.sim.versions()).to.deep.equal({ [A]: "v1", [B]: "v1" });
      // The rollback carries v1's own sequence: the record on A describes v1 again.
      expect(w.events).to.deep.equal([`deploy v2 (sequence 5) to ${A}`, `deploy v1 (sequence 4) to ${A}`]);
    } finally {
      w.restore();
    }
  });
});

describe("LaunchTemplateRelease gives newcomers the release before it moves the template", function () {
  // The step builds its own clients, so the simulators take over every client of each class.
  // Its SSM polling sleeps for real (a few seconds); the simulated agents run for 100 ms.
  this.timeout(120_000);

  it("a newcomer that fails stops the step before any launch-template call", async function () {
    const ssmSim = simulateSsm(SSMClient as never, {
      now: Date.now,
      instances: { [A]: { version: "v2", tags: TAGS }, [C]: { version: "v1", tags: TAGS } },
      agent: (ctx) => (ctx.instance.version === ctx.version ? { runMs: 100, end: "unchanged" } : { runMs: 100, end: ctx.version === "v2" ? "rolled_back" : "deployed" }),
    });
    const ec2Sim = ec2ImageSimulator(EC2Client as never, {
      now: Date.now,
      availableAfterMs: 0,
      instances: [
        { instanceId: A, tags: TAGS, imageId: "ami-0000000000000old1" },
        { instanceId: C, tags: TAGS, imageId: "ami-0000000000000old1" },
      ],
    });
    const s3 = mockClient(S3Client);
    s3.on(GetObjectCommand).resolves({ Body: { transformToString: async () => serializeLatestPointer(V1_POINTER) } as never, ETag: '"etag-v1"' });
    const saved = process.env.AWS_ENDPOINT_URL;
    process.env.AWS_ENDPOINT_URL = "http://127.0.0.1:9";
    try {
      const err = await failureOf(
        releaseTemplate({
          region: "us-east-1",
          app: APP,
          bucket: BUCKET,
          expectedLatestEtag: '"etag-v1"',
          imageParameterName: "/zcp/shop/prod/image-id",
          imageId: NEW_IMAGE,
          version: "v2",
          catchUp: { ...fleetInputs(), deployedInstances: [{ instanceId: A }] },
        }),
      );
      expect(err.message).to.contain(`LaunchTemplateRelease: v2 on the instance(s) that joined the fleet during the release (${C}) failed; nothing was moved`);
      expect(ssmSim.sim.sent().map((c) => [c.version, c.instanceIds])).to.deep.equal([["v2", [C]]]);
      expect(ec2Sim.calls.map((c) => c.name)).to.deep.equal(["DescribeInstances"]);
    } finally {
      if (saved === undefined) delete process.env.AWS_ENDPOINT_URL;
      else process.env.AWS_ENDPOINT_URL = saved;
      s3.restore();
      ec2Sim.restore();
      ssmSim.mock.restore();
    }
  });
});
