import * as fs from "node:fs";
import * as path from "node:path";
import { expect } from "chai";
import { parse as parseYaml } from "yaml";
import { repoRoot } from "../../shared/agent/document.js";
import {
  type ZcpConfig,
  checkAccountSeparation,
  loadConfig,
  parseBatch,
  parseConfig,
  rawConfigFromEntries,
} from "../../shared/config.js";
import { DEV_ACCOUNT, PROD_ACCOUNT, fullRawConfig, minimalRawConfig } from "../fixtures/infra/config.js";
import { useMocks } from "../helpers/pulumi-mocks.js";
import { configErrorOf } from "./support/config-error.js";

/**
 * The fixture with edits applied: keys are dotted paths, an `undefined` value deletes.
 * `{ "deploy.batch": "0%" }` sets zcp:deploy.batch.
 */
function changed(edits: Record<string, unknown>, base: Record<string, unknown> = minimalRawConfig()): Record<string, unknown> {
  for (const [dotted, value] of Object.entries(edits)) {
    const keys = dotted.split(".");
    const last = keys.pop()!;
    let node = base;
    for (const key of keys) {
      if (typeof node[key] !== "object" || node[key] === null) node[key] = {};
      node = node[key] as Record<string, unknown>;
    }
    if (value === undefined) delete node[last];
    else node[last] = value;
  }
  return base;
}

function stackFileRaw(stack: "dev" | "prod"): Record<string, unknown> {
  const text = fs.readFileSync(path.join(repoRoot(), `Pulumi.${stack}.yaml`), "utf8");
  const doc = parseYaml(text) as { config: Record<string, unknown> };
  return rawConfigFromEntries(doc.config);
}

describe("config: parseConfig", () => {
  it("fills every default from a minimal config", () => {
    const c = parseConfig(minimalRawConfig(), { stack: "dev" });
    expect(c.github).to.deep.equal({ owner: "example-org", repo: "web", environment: "dev", sessionDurationS: 14400 });
    expect(c.aws).to.deep.equal({ accountId: DEV_ACCOUNT, region: "eu-west-1", forbiddenAccountIds: [] });
    expect(c.oidc).to.deep.equal({ mode: "create" });
    expect(c.artifacts).to.deep.equal({ retainDays: 365, noncurrentRetainDays: 30, promoteReaders: [] });
    expect(c.fleet).to.deep.equal({
      mode: "create",
      minSize: 1,
      maxSize: 2,
      desiredCapacity: 1,
      subnetIds: ["subnet-0aaaaaaaaaaaaaaa1"],
      instanceType: "t3.small",
      securityGroupIds: [],
    });
    expect(c.runtime).to.deep.equal({
      user: "web",
      appDir: "/opt/web",
      appRoot: "/opt/web",
      processManager: "supervisor",
      service: "web",
      healthUrl: "http://127.0.0.1:8080/health",
      healthTimeoutS: 60,
    });
    expect(c.deploy).to.deep.equal({ canary: 1, batch: "25%", soakSeconds: 60, maxErrors: 0, keepReleases: 3, commandTimeoutS: 600, deliveryTimeoutS: 600, alarms: [] });
    expect(c.traffic).to.deep.equal({ control: "auto", targetGroupArns: [], minHealthyPercent: 50, healthyTimeoutS: 300 });
    expect(c.image).to.deep.equal({ enabled: true, noReboot: true, retain: 3, waitTimeoutMinutes: 60, bakeStart: "canary" });
    expect(c).to.not.have.property("stateBackend");
  });

  it("keeps every value of a full config", () => {
    const c = parseConfig(fullRawConfig(), { stack: "dev" });
    expect(c.github).to.deep.equal({ owner: "example-org", repo: "web", ownerId: "1000001", repoId: "2000001", environment: "dev", sessionDurationS: 14400 });
    expect(c.fleet).to.deep.include({ mode: "create", minSize: 2, maxSize: 4, desiredCapacity: 3, instanceType: "t3.medium" });
    // The target group checks the same path the agent does, unless told otherwise.
    expect(c.fleet.mode === "create" && c.fleet.targetGroup).to.deep.equal({
      vpcId: "vpc-0aaaaaaaaaaaaaaa1",
      port: 8080,
      healthCheckPath: "/healthz",
    });
    expect(c.runtime).to.deep.include({ user: "web", appDir: "/srv/web", appRoot: "/srv/web", processManager: "systemd", service: "web.service" });
    expect(c.deploy.batch).to.equal("2");
    expect(c.stateBackend).to.deep.equal({
      bucket: "example-org-pulumi-state",
      keyPrefix: "zcp/web",
      kmsKeyArn: `arn:aws:kms:eu-west-1:${DEV_ACCOUNT}:key/00000000-0000-0000-0000-000000000001`,
    });
  });

  it("keeps the preview environment, the trusted release workflow and the session length", () => {
    const ref = "example-org/web/.github/workflows/zcp-release.yml@refs/heads/main";
    const c = parseConfig(changed({ "github.previewEnvironment": "dev-preview", "github.releaseWorkflowRef": ref, "github.sessionDurationS": 7200 }), { stack: "dev" });
    expect(c.github).to.deep.include({ previewEnvironment: "dev-preview", releaseWorkflowRef: ref, sessionDurationS: 7200 });
  });

  it("accepts GitHub ids and numbers given as YAML numbers or strings", () => {
    const c = parseConfig(
      changed({ "github.ownerId": 1000001, "github.repoId": "2000001", "deploy.canary": "2", "deploy.batch": 3, "image.enabled": "false" }),
    );
    expect(c.github.ownerId).to.equal("1000001");
    expect(c.deploy).to.deep.include({ canary: 2, batch: "3" });
    expect(c.image.enabled).to.equal(false);
  });

  it("keeps traffic control, target groups, the minimum healthy share and alarm gates", () => {
    const arn = `arn:aws:elasticloadbalancing:eu-west-1:${DEV_ACCOUNT}:targetgroup/web-dev/0123456789abcdef`;
    const c = parseConfig(
      changed({ traffic: { control: "target-group", targetGroupArns: [arn], minHealthyPercent: "75", healthyTimeoutS: 120 }, "deploy.alarms": ["web-dev 5xx", "web-dev-latency"] }),
    );
    expect(c.traffic).to.deep.equal({ control: "target-group", targetGroupArns: [arn], minHealthyPercent: 75, healthyTimeoutS: 120 });
    expect(c.deploy.alarms).to.deep.equal(["web-dev 5xx", "web-dev-latency"]);
  });

  it("keeps the promote grants: the roles that may read this bucket, and the bucket this one promotes from", () => {
    const reader = `arn:aws:iam::${PROD_ACCOUNT}:role/zcp-web-prod-release`;
    const c = parseConfig(
      changed({ "artifacts.promoteReaders": [reader], "artifacts.promoteFrom": { bucket: "zcp-web-dev-abc1234", accountId: DEV_ACCOUNT } }),
    );
    expect(c.artifacts).to.deep.equal({
      retainDays: 365,
      noncurrentRetainDays: 30,
      promoteReaders: [reader],
      promoteFrom: { bucket: "zcp-web-dev-abc1234", accountId: DEV_ACCOUNT },
    });
  });

  it("adopts an existing OIDC provider and an existing Auto Scaling Group", () => {
    const arn = `arn:aws:iam::${DEV_ACCOUNT}:oidc-provider/token.actions.githubusercontent.com`;
    const c = parseConfig(
      changed({ oidc: { existingProviderArn: arn }, fleet: { asgName: "legacy-web-asg", securityGroupIds: ["sg-0aaaaaaaaaaaaaaa1"] } }),
    );
    expect(c.oidc).to.deep.equal({ mode: "existing", existingProviderArn: arn });
    expect(c.fleet).to.deep.equal({ mode: "existing", asgName: "legacy-web-asg", securityGroupIds: ["sg-0aaaaaaaaaaaaaaa1"] });
  });

  describe("rejects bad config with the field named", () => {
    it("a missing repository", () => {
      const err = configErrorOf(() => parseConfig(changed({ "github.repo": undefined })));
      expect(err.field).to.equal("zcp:github.repo");
      expect(err.message).to.equal("zcp:github.repo: is required");
    });

    for (const batch of ["0", "0%", "101%", "-1", "ten", "", "2.5"]) {
      it(`batch ${JSON.stringify(batch)}`, () => {
        const err = configErrorOf(() => parseConfig(changed({ "deploy.batch": batch })));
        expect(err.field).to.equal("zcp:deploy.batch");
        expect(err.message).to.equal(`zcp:deploy.batch: must be 1..100% or a count, got ${JSON.stringify(batch)}`);
      });
    }

    it("batch 0 given as a YAML number", () => {
      const err = configErrorOf(() => parseConfig(changed({ "deploy.batch": 0 })));
      expect(err.message).to.equal('zcp:deploy.batch: must be 1..100% or a count, got "0"');
    });

    it("an unknown process manager", () => {
      const err = configErrorOf(() => parseConfig(changed({ "runtime.processManager": "pm2" })));
      expect(err.field).to.equal("zcp:runtime.processManager");
      expect(err.message).to.equal('zcp:runtime.processManager: must be "supervisor" or "systemd", got "pm2"');
    });

    it("both an existing and a new OIDC provider", () => {
      const err = configErrorOf(() =>
        parseConfig(
          changed({
            oidc: { create: true, existingProviderArn: `arn:aws:iam::${DEV_ACCOUNT}:oidc-provider/token.actions.githubusercontent.com` },
          }),
        ),
      );
      expect(err.field).to.equal("zcp:oidc");
      expect(err.message).to.match(/^zcp:oidc: set either create: true or existingProviderArn, not both/);
    });

    for (const ref of [
      "example-org/web/.github/workflows/zcp-release.yml@*",
      "example-org/web/.github/workflows/zcp-release.yml",
      "example-org/web/.github/workflows/zcp-release.yml@refs/heads/main:job_workflow_ref:x",
      "example-org/web/ci/zcp-release.yml@refs/heads/main",
      "example-org/web/.github/workflows/zcp-release.yml@refs/pull/7/merge",
    ]) {
      it(`a release workflow ref that is not one exact reusable workflow: ${ref}`, () => {
        const err = configErrorOf(() => parseConfig(changed({ "github.releaseWorkflowRef": ref })));
        expect(err.field).to.equal("zcp:github.releaseWorkflowRef");
      });
    }

    it("a preview environment equal to the release environment (previews run pull-request code)", () => {
      const err = configErrorOf(() => parseConfig(changed({ "github.previewEnvironment": "dev" })));
      expect(err.field).to.equal("zcp:github.previewEnvironment");
      expect(err.message).to.match(/must differ from the release role's GitHub environment/);
    });

    it("a session shorter than IAM's minimum MaxSessionDuration", () => {
      const err = configErrorOf(() => parseConfig(changed({ "github.sessionDurationS": 900 })));
      expect(err.field).to.equal("zcp:github.sessionDurationS");
    });

    it("neither an existing nor a new OIDC provider", () => {
      const err = configErrorOf(() => parseConfig(changed({ oidc: { create: false } })));
      expect(err.field).to.equal("zcp:oidc.existingProviderArn");
    });

    it("an existing OIDC provider of another account", () => {
      const arn = `arn:aws:iam::${PROD_ACCOUNT}:oidc-provider/token.actions.githubusercontent.com`;
      const err = configErrorOf(() => parseConfig(changed({ oidc: { existingProviderArn: arn } })));
      expect(err.field).to.equal("zcp:oidc.existingProviderArn");
      expect(err.message).to.contain(`belongs to account ${PROD_ACCOUNT}`);
    });

    it("the prod stack configured with the dev account id", () => {
      const raw = stackFileRaw("prod");
      (raw["aws"] as Record<string, unknown>)["accountId"] = DEV_ACCOUNT;
      const err = configErrorOf(() => parseConfig(raw, { stack: "prod" }));
      expect(err.field).to.equal("zcp:aws.accountId");
      expect(err.message).to.contain(`${DEV_ACCOUNT} is listed in zcp:aws.forbiddenAccountIds`);
    });

    it("an environment that is not the stack's", () => {
      for (const stack of ["prod", "acme/prod"]) {
        const err = configErrorOf(() => parseConfig(minimalRawConfig(), { stack }));
        expect(err.message).to.equal('zcp:environment: must be "prod" in stack "prod", got "dev"');
      }
      // Other stack names (local, ci-123) carry no environment of their own.
      expect(parseConfig(minimalRawConfig(), { stack: "ci-123" }).environment).to.equal("dev");
    });

    it("an account id written as a YAML number", () => {
      const err = configErrorOf(() => parseConfig(changed({ "aws.accountId": 111111111111 })));
      expect(err.message).to.equal("zcp:aws.accountId: must be a quoted 12-digit account id, got 111111111111");
    });

    it("a misspelt key, at any level", () => {
      expect(configErrorOf(() => parseConfig(changed({ "deploy.bacth": "2" }))).message).to.equal(
        "zcp:deploy.bacth: is not a zcp setting (check the spelling)",
      );
      expect(configErrorOf(() => parseConfig(changed({ regoin: "eu-west-1" }))).field).to.equal("zcp:regoin");
    });

    const invalid: [string, Record<string, unknown>][] = [
      ["zcp:app", { app: "Web App" }],
      ["zcp:environment", { environment: "Dev" }],
      ["zcp:github.owner", { "github.owner": "example-*" }],
      ["zcp:github.repo", { "github.repo": "web*" }],
      ["zcp:github.repoId", { "github.ownerId": "1000001" }],
      ["zcp:github.environment", { "github.environment": "dev:*" }],
      ["zcp:aws.accountId", { "aws.accountId": "11111111111" }],
      ["zcp:aws.region", { "aws.region": "eu-west" }],
      ["zcp:baseAmiId", { baseAmiId: "ami-xyz" }],
      ["zcp:runtime.healthUrl", { "runtime.healthUrl": "ftp://127.0.0.1/health" }],
      ["zcp:runtime.healthUrl", { "runtime.healthUrl": "http://user:pw@127.0.0.1/health" }],
      ["zcp:runtime.healthUrl", { "runtime.healthUrl": "http://127.0.0.1/health'$(reboot)'" }],
      ["zcp:runtime.appDir", { "runtime.appDir": "opt/web" }],
      ["zcp:runtime.appDir", { "runtime.appDir": "/opt/../etc" }],
      ["zcp:runtime.appDir", { "runtime.appDir": "/opt/web/" }],
      ["zcp:runtime.user", { "runtime.user": "root;reboot" }],
      ["zcp:runtime.user", { "runtime.user": "root" }],
      ["zcp:runtime.user", { "runtime.user": "ubuntu" }],
      ["zcp:runtime.user", { "runtime.user": "ec2-user" }],
      ["zcp:runtime.appDir", { "runtime.appDir": "/srv/web", "runtime.appRoot": "/opt/web" }],
      ["zcp:runtime.appRoot", { "runtime.appRoot": "/opt/../etc" }],
      ["zcp:runtime.service", { "runtime.service": "web $(reboot)" }],
      ["zcp:runtime.healthTimeoutS", { "runtime.healthTimeoutS": 0 }],
      ["zcp:deploy.keepReleases", { "deploy.keepReleases": 0 }],
      ["zcp:deploy.keepReleases", { "deploy.keepReleases": 51 }],
      ["zcp:deploy.deliveryTimeoutS", { "deploy.deliveryTimeoutS": 10 }],
      ["zcp:deploy.deliveryTimeoutS", { "deploy.deliveryTimeoutS": "600s" }],
      ["zcp:runtime.appDir", { "runtime.appDir": "/opt" }],
      ["zcp:runtime.appDir", { "runtime.appDir": "/usr/local/web" }],
      ["zcp:deploy.canary", { "deploy.canary": 1.5 }],
      ["zcp:fleet.subnetIds", { "fleet.subnetIds": undefined }],
      ["zcp:fleet.subnetIds[1]", { "fleet.subnetIds": ["subnet-0aaaaaaaaaaaaaaa1", "subnet-1"] }],
      ["zcp:fleet.desiredCapacity", { "fleet.minSize": 1, "fleet.maxSize": 2, "fleet.desiredCapacity": 3 }],
      ["zcp:fleet.minSize", { "fleet.minSize": 3, "fleet.maxSize": 2 }],
      ["zcp:fleet.asgName", { fleet: { mode: "existing" } }],
      ["zcp:fleet.subnetIds", { fleet: { asgName: "legacy", subnetIds: ["subnet-0aaaaaaaaaaaaaaa1"] } }],
      ["zcp:fleet.mode", { "fleet.mode": "adopt" }],
      ["zcp:stateBackend.kmsKeyArn", { stateBackend: { bucket: "state-bucket", kmsKeyArn: "alias/pulumi" } }],
      ["zcp:image.enabled", { "image.enabled": "yes" }],
      ["zcp:traffic.control", { "traffic.control": "elb" }],
      ["zcp:traffic.minHealthyPercent", { "traffic.minHealthyPercent": 101 }],
      ["zcp:traffic.healthyTimeoutS", { "traffic.healthyTimeoutS": 0 }],
      ["zcp:traffic.targetGroupArns", { "traffic.control": "target-group" }],
      ["zcp:traffic.targetGroupArns[0]", { "traffic.targetGroupArns": ["arn:aws:elasticloadbalancing:eu-west-1:111111111111:loadbalancer/app/web/0123456789abcdef"] }],
      ["zcp:traffic.targetGroupArns[0]", { "traffic.targetGroupArns": ["arn:aws:elasticloadbalancing:eu-west-1:999999999999:targetgroup/web/0123456789abcdef"] }],
      ["zcp:traffic.targetGroupArns[0]", { "traffic.targetGroupArns": ["arn:aws:elasticloadbalancing:us-east-1:111111111111:targetgroup/web/0123456789abcdef"] }],
      // A wildcard in a reader's ARN would let any matching role of that account read.
      ["zcp:artifacts.promoteReaders[0]", { "artifacts.promoteReaders": ["arn:aws:iam::222222222222:role/zcp-web-*"] }],
      ["zcp:artifacts.promoteReaders[0]", { "artifacts.promoteReaders": ["arn:aws:iam::222222222222:root"] }],
      ["zcp:artifacts.promoteReaders[0]", { "artifacts.promoteReaders": ["*"] }],
      ["zcp:artifacts.promoteReaders[1]", { "artifacts.promoteReaders": ["arn:aws:iam::222222222222:role/ok", "arn:aws:iam::22222222222:role/short-account"] }],
      ["zcp:artifacts.promoteReaders", { "artifacts.promoteReaders": "arn:aws:iam::222222222222:role/zcp-web-prod-release" }],
      ["zcp:artifacts.promoteReaders[0]", { "artifacts.promoteReaders": ["arn:aws-cn:iam::222222222222:role/zcp-web-prod-release"] }],
      ["zcp:artifacts.promoteFrom.accountId", { "artifacts.promoteFrom": { bucket: "zcp-web-dev-abc1234" } }],
      ["zcp:artifacts.promoteFrom.bucket", { "artifacts.promoteFrom": { bucket: "Dev_Bucket", accountId: "111111111111" } }],
      ["zcp:artifacts.promoteFrom.accountId", { "artifacts.promoteFrom": { bucket: "zcp-web-dev-abc1234", accountId: 111111111111 } }],
      ["zcp:artifacts.promoteFrom.prefix", { "artifacts.promoteFrom": { bucket: "zcp-web-dev-abc1234", accountId: "111111111111", prefix: "x" } }],
      // A wildcard in an alarm name would widen the alarm ARNs the release role may read.
      ["zcp:deploy.alarms[0]", { "deploy.alarms": ["web-*"] }],
      ["zcp:deploy.alarms[1]", { "deploy.alarms": ["web-5xx", "web\nlatency"] }],
    ];
    for (const [field, edits] of invalid) {
      it(`${field} (${JSON.stringify(edits)})`, () => {
        expect(configErrorOf(() => parseConfig(changed(edits))).field).to.equal(field);
      });
    }

    it("names the first problem and lists all of them", () => {
      const err = configErrorOf(() =>
        parseConfig(
          changed({ "github.repo": undefined, "runtime.processManager": "pm2", "deploy.batch": "0%" }),
        ),
      );
      expect(err.field).to.equal("zcp:github.repo");
      expect(err.message.split("\n")).to.deep.equal([
        "zcp:github.repo: is required",
        'zcp:runtime.processManager: must be "supervisor" or "systemd", got "pm2"',
        'zcp:deploy.batch: must be 1..100% or a count, got "0%"',
      ]);
    });

    it("config that is not an object at all", () => {
      expect(configErrorOf(() => parseConfig("web")).field).to.equal("zcp");
    });
  });
});

describe("config: parseBatch", () => {
  const cases: [string, number, number][] = [
    ["1", 10, 1],
    ["3", 10, 3],
    ["25", 10, 10],
    ["25%", 10, 2],
    ["50%", 3, 1],
    ["100%", 7, 7],
    ["1%", 10, 1],
    ["10%", 0, 1],
  ];
  for (const [spec, fleet, expected] of cases) {
    it(`${spec} of ${fleet} instances is ${expected}`, () => {
      expect(parseBatch(spec, fleet)).to.equal(expected);
    });
  }

  it("rejects 0 and nonsense, naming zcp:deploy.batch", () => {
    for (const spec of ["0", "0%", "150%", "x"]) {
      const err = configErrorOf(() => parseBatch(spec, 10));
      expect(err.message).to.equal(`zcp:deploy.batch: must be 1..100% or a count, got ${JSON.stringify(spec)}`);
    }
  });
});

describe("config: stack files", () => {
  let dev: ZcpConfig;
  let prod: ZcpConfig;
  before(() => {
    dev = parseConfig(stackFileRaw("dev"), { stack: "dev" });
    prod = parseConfig(stackFileRaw("prod"), { stack: "prod" });
  });

  it("Pulumi.dev.yaml and Pulumi.prod.yaml validate as their stacks", () => {
    expect(dev.environment).to.equal("dev");
    expect(prod.environment).to.equal("prod");
  });

  it("point at different AWS accounts, each forbidding the other's", () => {
    expect(dev.aws.accountId).to.not.equal(prod.aws.accountId);
    expect(dev.aws.forbiddenAccountIds).to.include(prod.aws.accountId);
    expect(prod.aws.forbiddenAccountIds).to.include(dev.aws.accountId);
    expect(() => checkAccountSeparation([dev, prod])).to.not.throw();
  });

  it("the cross-stack check catches prod sharing dev's account", () => {
    const raw = stackFileRaw("prod");
    (raw["aws"] as Record<string, unknown>)["accountId"] = dev.aws.accountId;
    (raw["aws"] as Record<string, unknown>)["forbiddenAccountIds"] = [];
    const sharing = parseConfig(raw, { stack: "prod" });
    const err = configErrorOf(() => checkAccountSeparation([dev, sharing]));
    expect(err.field).to.equal("zcp:aws.accountId");
    expect(err.message).to.contain(`prod is configured with account ${DEV_ACCOUNT}, which "dev" uses too`);
  });
});

describe("config: rawConfigFromEntries and loadConfig", () => {
  it("decodes object keys given as JSON text and skips other namespaces", () => {
    const raw = rawConfigFromEntries({
      "zcp:app": "web",
      "zcp:github": '{"owner":"example-org","repo":"web"}',
      "aws:region": "eu-west-1",
    });
    expect(raw).to.deep.equal({ app: "web", github: { owner: "example-org", repo: "web" } });
  });

  it("names the key whose JSON does not parse", () => {
    const err = configErrorOf(() => rawConfigFromEntries({ "zcp:deploy": "{batch: 2" }));
    expect(err.field).to.equal("zcp:deploy");
  });

  it("loadConfig reads the stack's zcp: config and reports unknown keys", async () => {
    const entries = (raw: Record<string, unknown>) =>
      Object.fromEntries(Object.entries(raw).map(([k, v]) => [`zcp:${k}`, typeof v === "string" ? v : JSON.stringify(v)]));
    await useMocks({ stack: "dev", config: { ...entries(minimalRawConfig()), "aws:region": "eu-west-1" } });
    expect(loadConfig().runtime.appDir).to.equal("/opt/web");

    await useMocks({ stack: "dev", config: { ...entries(minimalRawConfig()), "zcp:deplyo": '{"batch":"2"}' } });
    expect(configErrorOf(() => loadConfig()).field).to.equal("zcp:deplyo");
  });
});
