/**
 * The foundation program (infra/index.ts) as `pulumi up` runs it for the dev stack, with the
 * config of Pulumi.dev.yaml, under mocks.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { expect } from "chai";
import { parse as parseYaml } from "yaml";
import { AGENT_SCRIPT_PATH, repoRoot } from "../../shared/agent/document.js";
import { FOUNDATION_OUTPUT_KEYS, type FoundationOutputs } from "../../shared/outputs.js";
import { evaluateAll } from "../../policy/rules.js";
import { type MockRecorder, type RecordedResource, useMocks, valueOf } from "../helpers/pulumi-mocks.js";
import { asSubject } from "./support/policy-subjects.js";

/** Pulumi.<stack>.yaml's config as the runtime passes it to a program: objects as JSON text. */
function stackConfig(stack: string): Record<string, string> {
  const doc = parseYaml(fs.readFileSync(path.join(repoRoot(), `Pulumi.${stack}.yaml`), "utf8")) as { config: Record<string, unknown> };
  return Object.fromEntries(Object.entries(doc.config).map(([k, v]) => [k, typeof v === "string" ? v : JSON.stringify(v)]));
}

type Program = { [K in keyof FoundationOutputs]-?: unknown };

describe("infra: the foundation program (dev stack)", function () {
  let mocks: MockRecorder;
  let program: Program;
  let outputs: Record<string, unknown>;
  let ours: RecordedResource[];

  before(async function () {
    // The program embeds the real agent; it is part of the repository.
    expect(fs.existsSync(path.join(repoRoot(), AGENT_SCRIPT_PATH)), "the agent script exists").to.equal(true);
    mocks = await useMocks({ stack: "dev", config: stackConfig("dev") });
    const already = mocks.resources.length;
    // import() of this CommonJS module yields a namespace; its `default` is the module's exports.
    const namespace = (await import("../../infra/index.js")) as unknown as { default: Program };
    program = namespace.default;
    outputs = {};
    for (const key of Object.keys(program)) outputs[key] = await valueOf(program[key as keyof Program] as never);
    ours = mocks.resources.slice(already);
  });

  it("exports exactly the FoundationOutputs contract", () => {
    const contract: (keyof FoundationOutputs)[] = [...FOUNDATION_OUTPUT_KEYS, "autoScalingGroupName"];
    expect(Object.keys(program).sort()).to.deep.equal([...contract].sort());
  });

  it("exports the values the release runner needs", () => {
    const bucket = mocks.get("aws:s3/bucket:Bucket", "artifacts-bucket").id;
    const lt = mocks.get("aws:ec2/launchTemplate:LaunchTemplate", "fleet-template").id;
    expect(outputs).to.deep.equal({
      app: "web",
      environment: "dev",
      accountId: "111111111111",
      region: "eu-west-1",
      bucket,
      artifactPrefix: "releases/web",
      documentName: "zcp-web-dev-deploy",
      launchTemplateId: lt,
      imageParameterName: "/zcp/web/dev/image-id",
      autoScalingGroupName: "zcp-web-dev",
      fleetTags: { "zcp:app": "web", "zcp:env": "dev" },
      releaseRoleArn: "arn:aws:iam::111111111111:role/zcp-web-dev-release",
      previewRoleArn: "arn:aws:iam::111111111111:role/zcp-web-dev-preview",
      instanceRoleArn: "arn:aws:iam::111111111111:role/zcp-web-dev-instance",
      instanceProfileName: "zcp-web-dev-instance",
    });
  });

  it("pins the deploy document to the configured app dir, app user and service", () => {
    const doc = mocks.get("aws-native:ssm:Document", "deploy-document-document");
    const content = (typeof doc.inputs.content === "string" ? JSON.parse(doc.inputs.content) : doc.inputs.content) as {
      parameters: Record<string, { allowedPattern: string }>;
      mainSteps: { inputs: { runCommand: string[] } }[];
    };
    expect(content.parameters.appDir?.allowedPattern).to.equal("^/opt/web$");
    expect(content.parameters.appUser?.allowedPattern).to.equal("^web$");
    expect(content.parameters.service?.allowedPattern).to.equal("^web$");
    expect(content.mainSteps[0]?.inputs.runCommand).to.include("  ZCP_APP_ROOT='/opt/web' \\");
  });

  it("wires one component per concern", () => {
    const components = ours.filter((r) => r.type.startsWith("zcp:infra:")).map((r) => `${r.type} ${r.name}`);
    expect(components).to.have.members([
      "zcp:infra:GitHubOidc github-oidc",
      "zcp:infra:ArtifactBucket artifacts",
      "zcp:infra:DeployDocument deploy-document",
      "zcp:infra:Roles roles",
      "zcp:infra:Fleet fleet",
    ]);
  });

  it("pins both providers to the configured account and region", () => {
    const list = (v: unknown) => (typeof v === "string" ? (JSON.parse(v) as unknown) : v);
    const aws = mocks.get("pulumi:providers:aws", "aws").inputs;
    const native = mocks.get("pulumi:providers:aws-native", "aws-native").inputs;
    for (const p of [aws, native]) {
      expect(p["region"]).to.equal("eu-west-1");
      expect(list(p["allowedAccountIds"])).to.deep.equal(["111111111111"]);
    }
  });

  it("creates every cloud resource through those providers, never a default one", () => {
    const cloud = ours.filter((r) => r.custom && !r.type.startsWith("pulumi:providers:"));
    expect(cloud.length).to.be.greaterThan(15);
    for (const r of cloud) {
      const expected = r.type.startsWith("aws-native:") ? "pulumi:providers:aws-native::aws-native::" : "pulumi:providers:aws::aws::";
      expect(r.provider ?? "", `${r.type} ${r.name}`).to.contain(expected);
    }
    expect(ours.filter((r) => r.type.startsWith("pulumi:providers:")).map((r) => r.name)).to.have.members(["aws", "aws-native"]);
  });

  it("creates the GitHub provider, as Pulumi.dev.yaml asks", () => {
    expect(ours.map((r) => r.type)).to.include("aws:iam/openIdConnectProvider:OpenIdConnectProvider");
  });

  it("lets prod's release role read dev's artifacts for zcp promote, as Pulumi.dev.yaml asks", () => {
    const policy = ours.find((r) => r.type === "aws:s3/bucketPolicy:BucketPolicy");
    const statements = (JSON.parse(String(policy?.inputs["policy"])) as { Statement: { Sid?: string; Condition?: unknown }[] }).Statement;
    expect(statements.find((st) => st.Sid === "PromoteReaders")?.Condition).to.deep.equal({
      ArnEquals: { "aws:PrincipalArn": "arn:aws:iam::222222222222:role/zcp-web-prod-release" },
    });
  });

  it("passes every policy-pack rule", () => {
    expect(evaluateAll(ours.map(asSubject))).to.deep.equal([]);
  });
});
