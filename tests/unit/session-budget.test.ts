/**
 * The role session outlives the release: the runner adds up the planned release's worst case
 * and refuses it (exit 2) before anything changes when the credentials expire sooner. The
 * credentials' expiry comes from the SDK's default provider chain (mocked STS and EC2 clients,
 * nothing leaves the process); the clock is injected.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { expect } from "chai";
import { mockClient } from "aws-sdk-client-mock";
import { DescribeInstancesCommand, EC2Client } from "@aws-sdk/client-ec2";
import { S3Client } from "@aws-sdk/client-s3";
import { GetCallerIdentityCommand, STSClient } from "@aws-sdk/client-sts";
import { checkReleaseSession, checkSessionBudget, releaseWorstCase } from "../../deploy/session-budget.js";
import { release } from "../../deploy/runner.js";
import { LOCAL_PASSPHRASE, type EnvironmentContext } from "../../deploy/environments.js";
import type { ReleasePlan } from "../../deploy/program.js";
import { ConfigError, ExitCode } from "../../shared/errors.js";
import { SHOP_RUNTIME } from "../fixtures/release/sim-release.js";

const NOW = Date.parse("2026-12-07T10:00:00Z");
const inSeconds = (s: number) => new Date(NOW + s * 1000);

const PLAN: Pick<ReleasePlan, "fleet" | "image"> = {
  fleet: {
    runtime: SHOP_RUNTIME,
    canary: 1,
    batch: "50%",
    soakSeconds: 60,
    maxErrors: 0,
    commandTimeoutS: 600,
    deliveryTimeoutS: 600,
    transport: { kind: "ssm", documentName: "zcp-shop-prod-deploy" },
    traffic: { kind: "none" },
    minHealthyPercent: 0,
    alarmNames: [],
  },
  image: { enabled: true, noReboot: true, retain: 3, waitTimeoutMinutes: 60, tagSnapshotsOnCreate: true, bakeStart: "canary" },
};

/**
 * 4 instances: the canary, then batches of 2 and 1 (3 batches), each up to 600 s delivery +
 * 600 s execution + 120 s polling = 1,320 s; a 60 s soak; two catch-up batches (before the
 * template and before the pointer), each with 180 s for a newcomer's boot converge, 3,000 s;
 * the image 3,600 s; 120 s for the engine.
 */
const WORST_4 = 3 * 1320 + 60 + 2 * (1320 + 180) + 3600 + 120;

describe("the role session outlives the release (deploy/session-budget.ts)", function () {
  it("adds up the planned worst case from the plan and the fleet's size", function () {
    const w = releaseWorstCase(PLAN, 4);
    expect(w.batches).to.equal(3);
    expect(w.seconds).to.equal(WORST_4);
    expect(w.parts.map((p) => p.what)).to.deep.equal([
      "3 batch(es) × (delivery 600s + execution 600s + polling 120s)",
      "canary soak",
      "2 catch-up batch(es) for instances launched meanwhile (each + 180s for a boot converge)",
      "image wait",
      "engine and API calls",
    ]);
    // Without an image: no image wait and one catch-up (before the pointer); a load balancer
    // adds each batch's drain and return.
    const lb = releaseWorstCase(
      {
        fleet: { ...PLAN.fleet, traffic: { kind: "haproxy", socketPath: "/run/haproxy.sock", backend: "app", drainTimeoutS: 30, healthyTimeoutS: 60 } },
        image: { ...PLAN.image, enabled: false },
      },
      4,
    );
    expect(lb.seconds).to.equal(3 * (1320 + 90) + 60 + (1320 + 90 + 180) + 120);
  });

  it("refuses a release that may outlast the session left, naming both numbers and the field", function () {
    const lines: string[] = [];
    const err = (() => {
      try {
        checkSessionBudget({ expiration: inSeconds(3600), now: NOW, worstCase: releaseWorstCase(PLAN, 4), log: (l) => lines.push(l) });
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    expect(err).to.be.instanceOf(ConfigError);
    expect((err as ConfigError).exitCode).to.equal(ExitCode.BadInput);
    const message = (err as Error).message;
    expect(message).to.match(/^zcp:github\.sessionDurationS: /);
    expect(message).to.contain(`the role session ends in 3600s (at 2026-12-07T11:00:00.000Z) but this release may take up to ${WORST_4}s`);
    expect(message).to.contain("image wait 3600s");
    expect(message).to.contain("nothing was changed");
  });

  it("lets a release through that fits, saying how much of the session is left", function () {
    const lines: string[] = [];
    checkSessionBudget({ expiration: inSeconds(43200), now: NOW, worstCase: releaseWorstCase(PLAN, 4), log: (l) => lines.push(l) });
    expect(lines).to.deep.equal([`role session: 43200s left, this release may take up to ${WORST_4}s`]);
  });

  it("skips the check, and says so, when the credentials carry no expiry (the local emulator); the fleet is not even counted", async function () {
    const lines: string[] = [];
    let counted = false;
    await checkReleaseSession(PLAN, ctxFor(), (l) => lines.push(l), {
      credentials: async () => ({ accessKeyId: "testing", secretAccessKey: "testing" }),
      fleetSize: async () => {
        counted = true;
        return 4;
      },
      now: () => NOW,
    });
    expect(lines).to.deep.equal(["role session: the credentials carry no expiry (AWS_CREDENTIAL_EXPIRATION unset, or an emulator's); not checking that the release fits in the session"]);
    expect(counted).to.equal(false);
  });

  describe("zcp release, before it changes anything", function () {
    const saved: Record<string, string | undefined> = {};
    const VARS = ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_CREDENTIAL_EXPIRATION", "AWS_PROFILE", "AWS_ENDPOINT_URL"];
    let sts: ReturnType<typeof mockClient>;
    let ec2: ReturnType<typeof mockClient>;
    let s3: ReturnType<typeof mockClient>;
    let workDir: string;

    beforeEach(function () {
      for (const k of VARS) saved[k] = process.env[k];
      delete process.env.AWS_PROFILE;
      // Every client is mocked; were one not, its request would end at a closed loopback port.
      process.env.AWS_ENDPOINT_URL = "http://127.0.0.1:9";
      // A web-identity session as a CI job holds it: temporary keys and when they expire.
      process.env.AWS_ACCESS_KEY_ID = "ASIATESTSESSION00000";
      process.env.AWS_SECRET_ACCESS_KEY = "testing";
      process.env.AWS_SESSION_TOKEN = "testing";
      process.env.AWS_CREDENTIAL_EXPIRATION = new Date(Date.now() + 3600 * 1000).toISOString();
      sts = mockClient(STSClient);
      sts.on(GetCallerIdentityCommand).resolves({ Account: "111111111111" });
      ec2 = mockClient(EC2Client);
      ec2.on(DescribeInstancesCommand).resolves({
        Reservations: [{ Instances: ["a", "b", "c", "d"].map((x) => ({ InstanceId: `i-000000000000000${x}`, State: { Name: "running" as const } })) }],
      });
      s3 = mockClient(S3Client);
      workDir = fs.mkdtempSync(path.join(os.tmpdir(), "zcp-session-"));
    });

    afterEach(function () {
      sts.restore();
      ec2.restore();
      s3.restore();
      for (const k of VARS) {
        if (saved[k] === undefined) delete process.env[k];
        else process.env[k] = saved[k];
      }
      fs.rmSync(workDir, { recursive: true, force: true });
    });

    it("refuses with exit 2 when the SDK's credentials expire before the planned worst case: no upload, no stack, no workspace", async function () {
      const out = { info: () => undefined, result: () => undefined };
      const err = await release(ctxFor(workDir), { version: "v2", existingArtifactOnly: true }, out, { live: false }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).to.be.instanceOf(ConfigError);
      expect((err as ConfigError).exitCode).to.equal(ExitCode.BadInput);
      expect((err as Error).message).to.match(/^zcp:github\.sessionDurationS: the role session ends in 3[0-9]{3}s .* but this release may take up to 10740s/);
      expect(s3.calls(), "nothing was read or written in the bucket").to.have.length(0);
      expect(fs.readdirSync(workDir), "no release workspace, no state backend").to.deep.equal([]);
    });
  });
});

/** An environment whose release stack would live in a file backend under `workDir`/state. */
function ctxFor(workDir = os.tmpdir()): EnvironmentContext {
  const backend = path.join(workDir, "state");
  return {
    name: "prod",
    outputs: {
      app: "shop",
      environment: "prod",
      accountId: "111111111111",
      region: "us-east-1",
      bucket: "zcp-shop-prod-artifacts",
      artifactPrefix: "releases/shop",
      documentName: "zcp-shop-prod-deploy",
      launchTemplateId: "lt-0abc",
      imageParameterName: "/zcp/shop/prod/image-id",
      fleetTags: { "zcp:app": "shop", "zcp:env": "prod" },
      releaseRoleArn: "arn:aws:iam::111111111111:role/zcp-shop-prod-release",
      previewRoleArn: "arn:aws:iam::111111111111:role/zcp-shop-prod-preview",
      instanceRoleArn: "arn:aws:iam::111111111111:role/zcp-shop-prod-instance",
      instanceProfileName: "zcp-shop-prod-instance",
    },
    settings: {
      accountId: "111111111111",
      runtime: PLAN.fleet.runtime,
      deploy: { canary: 1, batch: "50%", soakSeconds: 60, maxErrors: 0, commandTimeoutS: 600, deliveryTimeoutS: 600 },
      traffic: { spec: { kind: "none" }, minHealthyPercent: 0 },
      alarms: [],
      image: PLAN.image,
    },
    backendUrl: `file://${backend}`,
    fileBackendDir: backend,
    secrets: { secretsProvider: "passphrase", passphrase: LOCAL_PASSPHRASE },
    engineEnv: {},
    transport: { kind: "ssm", documentName: "zcp-shop-prod-deploy" },
    workDir,
    defaultSource: { kind: "dir", dir: workDir },
    instanceVersions: async () => new Map(),
  };
}
