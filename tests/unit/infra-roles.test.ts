import { expect } from "chai";
import type * as RolesModule from "../../infra/roles.js";
import { ACCOUNT, PROVIDER_ARN, TAGS, rolesArgs } from "../fixtures/infra/components.js";
import { type MockRecorder, parentTypeOf, registered, useMocks, valueOf } from "../helpers/pulumi-mocks.js";

const ROLE = "aws:iam/role:Role";
const ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy";
const ATTACHMENT = "aws:iam/rolePolicyAttachment:RolePolicyAttachment";
const PROFILE = "aws:iam/instanceProfile:InstanceProfile";

function trustOf(mocks: MockRecorder, name: string) {
  return JSON.parse(mocks.get(ROLE, name).inputs["assumeRolePolicy"] as string) as { Statement: Record<string, unknown>[] };
}

describe("infra: Roles", () => {
  let mocks: MockRecorder;
  let mod: typeof RolesModule;
  before(async () => {
    mocks = await useMocks();
    mod = await import("../../infra/roles.js");
  });

  async function build(name: string, args: RolesModule.RolesArgs = rolesArgs()) {
    const c = new mod.Roles(name, args);
    const urns = await registered(
      c.releaseRole,
      c.releasePolicy,
      c.previewRole,
      c.previewPolicy,
      c.instanceRole,
      c.instanceCore,
      c.instancePolicy,
      c.instanceProfile,
    );
    return { c, urns };
  }

  it("creates the release, preview and instance roles, their policies and the profile, as children", async () => {
    const { c, urns } = await build("r1");
    expect(mocks.named("r1").map((r) => `${r.type} ${r.name}`)).to.have.members([
      "zcp:infra:Roles r1",
      `${ROLE} r1-release`,
      `${ROLE_POLICY} r1-release-policy`,
      `${ROLE} r1-preview`,
      `${ROLE_POLICY} r1-preview-policy`,
      `${ROLE} r1-instance`,
      `${ATTACHMENT} r1-instance-ssm-core`,
      `${ROLE_POLICY} r1-instance-policy`,
      `${PROFILE} r1-instance-profile`,
    ]);
    for (const urn of urns) expect(parentTypeOf(urn), urn).to.equal("zcp:infra:Roles");
    expect(await valueOf(c.releaseRoleArn)).to.equal(`arn:aws:iam::${ACCOUNT}:role/zcp-web-dev-release`);
    expect(await valueOf(c.previewRoleArn)).to.equal(`arn:aws:iam::${ACCOUNT}:role/zcp-web-dev-preview`);
    expect(await valueOf(c.instanceRoleArn)).to.equal(`arn:aws:iam::${ACCOUNT}:role/zcp-web-dev-instance`);
    expect(await valueOf(c.instanceProfileName)).to.equal("zcp-web-dev-instance");
  });

  it("trusts GitHub for the release role only from the environment's jobs, in both subject forms", async () => {
    await build("r2");
    const role = mocks.get(ROLE, "r2-release").inputs;
    expect(role).to.deep.include({ name: "zcp-web-dev-release", maxSessionDuration: 14400, tags: TAGS });
    expect(trustOf(mocks, "r2-release").Statement).to.deep.equal([
      {
        Sid: "GitHubActions",
        Effect: "Allow",
        Principal: { Federated: PROVIDER_ARN },
        Action: "sts:AssumeRoleWithWebIdentity",
        Condition: {
          StringEquals: {
            "token.actions.githubusercontent.com:aud": "sts.amazonaws.com",
            "token.actions.githubusercontent.com:sub": [
              "repo:example-org/web:environment:dev",
              "repo:example-org@1000001/web@2000001:environment:dev",
            ],
          },
        },
      },
    ]);
  });

  it("gives the release role zcp:github.sessionDurationS as its longest session; the preview role keeps one hour", async () => {
    await build("r9", rolesArgs({ sessionDurationS: 14400 }));
    expect(mocks.get(ROLE, "r9-release").inputs).to.include({ name: "zcp-web-dev-release", maxSessionDuration: 14400 });
    expect(mocks.get(ROLE, "r9-preview").inputs).to.include({ name: "zcp-web-dev-preview", maxSessionDuration: 3600 });
  });

  it("trusts pull requests for the preview role, and only the name form without ids", async () => {
    await build("r3", rolesArgs({ withIds: false }));
    const [statement] = trustOf(mocks, "r3-preview").Statement;
    expect(statement!["Condition"]).to.deep.equal({
      StringEquals: {
        "token.actions.githubusercontent.com:aud": "sts.amazonaws.com",
        "token.actions.githubusercontent.com:sub": "repo:example-org/web:pull_request",
      },
    });
  });

  it("binds the release role to a differently named GitHub environment when configured", async () => {
    await build("r4", rolesArgs({ withIds: false, githubEnvironment: "development" }));
    const [statement] = trustOf(mocks, "r4-release").Statement;
    expect((statement!["Condition"] as Record<string, Record<string, unknown>>)["StringEquals"]!["token.actions.githubusercontent.com:sub"]).to.equal(
      "repo:example-org/web:environment:development",
    );
  });

  it("lets only EC2 assume the instance role, with SSM core, read-only releases and a profile", async () => {
    await build("r5");
    expect(trustOf(mocks, "r5-instance").Statement).to.deep.equal([
      { Effect: "Allow", Principal: { Service: "ec2.amazonaws.com" }, Action: "sts:AssumeRole" },
    ]);
    expect(mocks.get(ATTACHMENT, "r5-instance-ssm-core").inputs).to.deep.equal({
      role: "zcp-web-dev-instance",
      policyArn: "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore",
    });
    const policy = mocks.get(ROLE_POLICY, "r5-instance-policy").inputs;
    expect(policy["role"]).to.equal("zcp-web-dev-instance");
    const actions = (JSON.parse(policy["policy"] as string) as { Statement: { Action: string | string[] }[] }).Statement.flatMap((s) => s.Action);
    expect(actions).to.have.members(["s3:GetBucketLocation", "s3:ListBucket", "s3:GetObject"]);
    expect(mocks.get(PROFILE, "r5-instance-profile").inputs).to.deep.equal({ name: "zcp-web-dev-instance", role: "zcp-web-dev-instance", tags: TAGS });
  });

  it("lets the release role read the artifacts of the bucket it promotes from, pinned to that bucket's account, and only with promoteFrom", async () => {
    await build("r7", { ...rolesArgs(), promoteFrom: { bucket: "zcp-web-dev-abc1234", accountId: "333333333333" } });
    const statements = (name: string) =>
      (JSON.parse(mocks.get(ROLE_POLICY, name).inputs["policy"] as string) as { Statement: { Sid: string }[] }).Statement;
    expect(statements("r7-release-policy").find((s) => s.Sid === "PromoteFromRead")).to.deep.equal({
      Sid: "PromoteFromRead",
      Effect: "Allow",
      Action: "s3:GetObject",
      Resource: "arn:aws:s3:::zcp-web-dev-abc1234/releases/web/*.tar.gz",
      Condition: { StringEquals: { "s3:ResourceAccount": "333333333333" } },
    });
    expect(statements("r7-preview-policy").map((s) => s.Sid)).to.not.include("PromoteFromRead");
    await build("r8");
    expect(statements("r8-release-policy").map((s) => s.Sid)).to.not.include("PromoteFromRead");
  });

  it("attaches each permission policy to its own role", async () => {
    await build("r6");
    expect(mocks.get(ROLE_POLICY, "r6-release-policy").inputs["role"]).to.equal("zcp-web-dev-release");
    expect(mocks.get(ROLE_POLICY, "r6-preview-policy").inputs["role"]).to.equal("zcp-web-dev-preview");
    const release = JSON.parse(mocks.get(ROLE_POLICY, "r6-release-policy").inputs["policy"] as string) as { Statement: { Sid: string }[] };
    expect(release.Statement.map((s) => s.Sid)).to.include.members(["SendDeployDocument", "SendToOwnInstances", "StateBackendWrite", "StateSecrets"]);
  });
});
