/**
 * The release, preview and instance roles' permissions, as the Roles and Fleet components
 * deploy them, evaluated by an IAM policy engine: what each role may do, and what it may not.
 */
import { expect } from "chai";
import type * as FleetModule from "../../infra/fleet.js";
import type * as RolesModule from "../../infra/roles.js";
import { ACCOUNT, PROVIDER_ARN, REGION, STATE_BACKEND, fleetArgs, rolesArgs } from "../fixtures/infra/components.js";
import { type MockRecorder, mockLaunchTemplateId, registered, useMocks, valueOf } from "../helpers/pulumi-mocks.js";
import { decide } from "./support/iam-engine.js";

const BUCKET = "zcp-web-dev-abc1234";
const ARN = {
  object: (key: string, bucket = BUCKET) => `arn:aws:s3:::${bucket}/${key}`,
  bucket: (bucket = BUCKET) => `arn:aws:s3:::${bucket}`,
  document: (name: string) => `arn:aws:ssm:${REGION}:${ACCOUNT}:document/${name}`,
  instance: (id = "i-0123456789abcdef0") => `arn:aws:ec2:${REGION}:${ACCOUNT}:instance/${id}`,
  image: (id = "ami-0123456789abcdef0") => `arn:aws:ec2:${REGION}::image/${id}`,
  snapshot: (id = "snap-0123456789abcdef0") => `arn:aws:ec2:${REGION}::snapshot/${id}`,
  template: (id: string) => `arn:aws:ec2:${REGION}:${ACCOUNT}:launch-template/${id}`,
  parameter: (name: string) => `arn:aws:ssm:${REGION}:${ACCOUNT}:parameter${name}`,
};
/** The parameter the fleet's launch template resolves its image from. */
const IMAGE_PARAMETER = "/zcp/web/dev/image-id";
/** What an attacker holding the release role would put in a template version of its own. */
const ESCALATION = {
  "ec2:InstanceProfile": `arn:aws:iam::${ACCOUNT}:instance-profile/admin-instance-profile`,
  "ec2:MetadataHttpTokens": "optional",
};
const tags = (prefix: string, t: Record<string, string>) => Object.fromEntries(Object.entries(t).map(([k, v]) => [`${prefix}/${k}`, v]));
const OWN = { "zcp:app": "web", "zcp:env": "dev" };

interface Case {
  name: string;
  action: string;
  resource: string;
  context?: Record<string, string>;
}

describe("role permissions under an IAM engine", () => {
  let mocks: MockRecorder;
  let policies: { release: object[]; preview: object[]; instance: object[] };
  /** The id the mocks give the Fleet's template, known up front so each case is its own test. */
  const templateId = mockLaunchTemplateId("perm-fleet-template");

  before(async () => {
    mocks = await useMocks();
    const { Roles } = (await import("../../infra/roles.js")) as typeof RolesModule;
    const { Fleet } = (await import("../../infra/fleet.js")) as typeof FleetModule;
    const roles = new Roles("perm", rolesArgs({ bucketName: BUCKET }));
    const fleet = new Fleet("perm-fleet", { ...fleetArgs(), releaseRoleName: roles.releaseRoleName, previewRoleName: "zcp-web-dev-preview" });
    await registered(roles.releasePolicy, roles.previewPolicy, roles.instancePolicy, fleet.releaseImagePolicy);
    expect(await valueOf(fleet.launchTemplateId)).to.equal(templateId);
    // Every inline policy the program attaches, grouped by the role it is attached to.
    const attached = (role: string) =>
      mocks.resources
        .filter((r) => r.type === "aws:iam/rolePolicy:RolePolicy" && r.inputs["role"] === role && r.name.startsWith("perm"))
        .map((r) => JSON.parse(r.inputs["policy"] as string) as object);
    policies = { release: attached("zcp-web-dev-release"), preview: attached("zcp-web-dev-preview"), instance: attached("zcp-web-dev-instance") };
    expect(policies.release).to.have.length(2, "the role's own policy and the image parameter grant");
  });

  /**
   * KMS honours IAM policies only where the key policy delegates to the account, as the
   * default key policy does; the state key is assumed to have it.
   */
  const DEFAULT_KEY_POLICY = {
    Version: "2012-10-17",
    Statement: [{ Sid: "EnableIamPolicies", Effect: "Allow", Principal: { AWS: `arn:aws:iam::${ACCOUNT}:root` }, Action: "kms:*", Resource: "*" }],
  };

  function check(role: keyof typeof policies, c: Case) {
    return decide({
      principal: `arn:aws:sts::${ACCOUNT}:assumed-role/zcp-web-dev-${role}/session`,
      action: c.action,
      resource: c.resource,
      resourceAccount: ACCOUNT,
      context: c.context ?? {},
      identityPolicies: policies[role],
      ...(c.action.startsWith("kms:") ? { resourcePolicy: DEFAULT_KEY_POLICY } : {}),
    });
  }

  function matrix(role: keyof typeof policies, allowed: Case[], denied: Case[]) {
    describe(`${role} role`, () => {
      for (const c of allowed) {
        it(`may ${c.name} (${c.action})`, () => {
          expect(check(role, c), c.resource).to.equal("Allowed");
        });
      }
      for (const c of denied) {
        it(`may not ${c.name} (${c.action})`, () => {
          expect(check(role, c), c.resource).to.not.equal("Allowed");
        });
      }
    });
  }

  matrix(
    "release",
    [
      { name: "upload an artifact", action: "s3:PutObject", resource: ARN.object("releases/web/v1.4.2.tar.gz") },
      { name: "verify an artifact", action: "s3:GetObject", resource: ARN.object("releases/web/v1.4.2.tar.gz") },
      { name: "read its checksum", action: "s3:GetObjectAttributes", resource: ARN.object("releases/web/v1.4.2.tar.gz") },
      { name: "read latest.json", action: "s3:GetObject", resource: ARN.object("releases/web/latest.json") },
      { name: "move latest.json", action: "s3:PutObject", resource: ARN.object("releases/web/latest.json") },
      { name: "read an artifact's retention tag", action: "s3:GetObjectTagging", resource: ARN.object("releases/web/v1.4.2.tar.gz") },
      { name: "keep the current and previous artifacts (retention tag)", action: "s3:PutObjectTagging", resource: ARN.object("releases/web/v1.4.2.tar.gz") },
      { name: "list the bucket (404 for a missing pointer)", action: "s3:ListBucket", resource: ARN.bucket() },
      { name: "send the zcp document", action: "ssm:SendCommand", resource: ARN.document("zcp-web-dev-deploy") },
      { name: "to its own instances", action: "ssm:SendCommand", resource: ARN.instance(), context: tags("ssm:resourceTag", OWN) },
      { name: "follow commands", action: "ssm:GetCommandInvocation", resource: "*" },
      { name: "list invocations", action: "ssm:ListCommandInvocations", resource: "*" },
      { name: "describe the fleet", action: "autoscaling:DescribeAutoScalingGroups", resource: "*" },
      { name: "describe instances", action: "ec2:DescribeInstances", resource: "*" },
      { name: "image its own instance", action: "ec2:CreateImage", resource: ARN.instance(), context: tags("aws:ResourceTag", OWN) },
      { name: "create an image tagged with its app", action: "ec2:CreateImage", resource: ARN.image(), context: tags("aws:RequestTag", { "zcp:app": "web" }) },
      { name: "and its snapshot", action: "ec2:CreateImage", resource: ARN.snapshot() },
      { name: "tag images it creates", action: "ec2:CreateTags", resource: ARN.image(), context: { "ec2:CreateAction": "CreateImage" } },
      { name: "tag its own image later", action: "ec2:CreateTags", resource: ARN.image(), context: { ...tags("aws:ResourceTag", { "zcp:app": "web" }), "aws:RequestTag/zcp:version": "v1" } },
      { name: "promote or retire its own candidate image", action: "ec2:CreateTags", resource: ARN.image(), context: { ...tags("aws:ResourceTag", { "zcp:app": "web" }), "aws:RequestTag/zcp:image-stage": "released" } },
      { name: "retire its own image", action: "ec2:DeregisterImage", resource: ARN.image(), context: tags("aws:ResourceTag", { "zcp:app": "web" }) },
      { name: "delete its own snapshot", action: "ec2:DeleteSnapshot", resource: ARN.snapshot(), context: tags("aws:ResourceTag", { "zcp:app": "web" }) },
      { name: "move its image parameter", action: "ssm:PutParameter", resource: ARN.parameter(IMAGE_PARAMETER) },
      { name: "read its image parameter", action: "ssm:GetParameter", resource: ARN.parameter(IMAGE_PARAMETER) },
      { name: "read its image parameter's history", action: "ssm:GetParameterHistory", resource: ARN.parameter(IMAGE_PARAMETER) },
      { name: "write release state", action: "s3:PutObject", resource: ARN.object("zcp/web/.pulumi/stacks/release/dev.json", STATE_BACKEND.bucket) },
      { name: "read release state", action: "s3:GetObject", resource: ARN.object("zcp/web/.pulumi/stacks/release/dev.json", STATE_BACKEND.bucket) },
      { name: "decrypt state secrets", action: "kms:Decrypt", resource: STATE_BACKEND.kmsKeyArn },
      { name: "encrypt state secrets", action: "kms:Encrypt", resource: STATE_BACKEND.kmsKeyArn },
    ],
    [
      { name: "write another app's prefix", action: "s3:PutObject", resource: ARN.object("releases/api/v1.tar.gz") },
      { name: "write a prefix sharing the name", action: "s3:PutObject", resource: ARN.object("releases/web-evil/v1.tar.gz") },
      { name: "write outside releases/", action: "s3:PutObject", resource: ARN.object("other/web.tar.gz") },
      { name: "retag another app's artifact", action: "s3:PutObjectTagging", resource: ARN.object("releases/api/v1.tar.gz") },
      { name: "retag outside releases/", action: "s3:PutObjectTagging", resource: ARN.object("agents/web/zcp-agent-x.sh") },
      { name: "retag in another bucket", action: "s3:PutObjectTagging", resource: ARN.object("releases/web/v1.tar.gz", "other-bucket") },
      { name: "remove an artifact's tags", action: "s3:DeleteObjectTagging", resource: ARN.object("releases/web/v1.4.2.tar.gz") },
      { name: "retag an old object version", action: "s3:PutObjectVersionTagging", resource: ARN.object("releases/web/v1.4.2.tar.gz") },
      { name: "change the bucket's lifecycle", action: "s3:PutLifecycleConfiguration", resource: ARN.bucket() },
      { name: "replace the boot agent", action: "s3:PutObject", resource: ARN.object("agents/web/zcp-agent-x.sh") },
      { name: "delete an artifact", action: "s3:DeleteObject", resource: ARN.object("releases/web/v1.4.2.tar.gz") },
      { name: "write another bucket", action: "s3:PutObject", resource: ARN.object("releases/web/v1.tar.gz", "other-bucket") },
      { name: "change the bucket policy", action: "s3:PutBucketPolicy", resource: ARN.bucket() },
      { name: "send AWS-RunShellScript", action: "ssm:SendCommand", resource: `arn:aws:ssm:${REGION}::document/AWS-RunShellScript` },
      { name: "send another app's document", action: "ssm:SendCommand", resource: ARN.document("zcp-api-dev-deploy") },
      { name: "send prod's document", action: "ssm:SendCommand", resource: ARN.document("zcp-web-prod-deploy") },
      { name: "to an untagged instance", action: "ssm:SendCommand", resource: ARN.instance() },
      { name: "to another app's instance", action: "ssm:SendCommand", resource: ARN.instance(), context: tags("ssm:resourceTag", { "zcp:app": "api", "zcp:env": "dev" }) },
      { name: "to another environment's instance", action: "ssm:SendCommand", resource: ARN.instance(), context: tags("ssm:resourceTag", { "zcp:app": "web", "zcp:env": "prod" }) },
      { name: "to an instance tagged with the app only", action: "ssm:SendCommand", resource: ARN.instance(), context: tags("ssm:resourceTag", { "zcp:app": "web" }) },
      { name: "start a session", action: "ssm:StartSession", resource: ARN.instance() },
      { name: "image an untagged instance", action: "ec2:CreateImage", resource: ARN.instance() },
      { name: "image another app's instance", action: "ec2:CreateImage", resource: ARN.instance(), context: tags("aws:ResourceTag", { "zcp:app": "api", "zcp:env": "dev" }) },
      { name: "create an untagged image", action: "ec2:CreateImage", resource: ARN.image() },
      { name: "create an image tagged for another app", action: "ec2:CreateImage", resource: ARN.image(), context: tags("aws:RequestTag", { "zcp:app": "api" }) },
      { name: "retire another app's image", action: "ec2:DeregisterImage", resource: ARN.image(), context: tags("aws:ResourceTag", { "zcp:app": "api" }) },
      { name: "retire an untagged image", action: "ec2:DeregisterImage", resource: ARN.image() },
      { name: "delete another app's snapshot", action: "ec2:DeleteSnapshot", resource: ARN.snapshot(), context: tags("aws:ResourceTag", { "zcp:app": "api" }) },
      { name: "relabel its image as another app's", action: "ec2:CreateTags", resource: ARN.image(), context: { ...tags("aws:ResourceTag", { "zcp:app": "web" }), "aws:RequestTag/zcp:app": "api" } },
      { name: "promote another app's candidate image", action: "ec2:CreateTags", resource: ARN.image(), context: { ...tags("aws:ResourceTag", { "zcp:app": "api" }), "aws:RequestTag/zcp:image-stage": "released" } },
      { name: "tag another app's image", action: "ec2:CreateTags", resource: ARN.image(), context: tags("aws:ResourceTag", { "zcp:app": "api" }) },
      { name: "tag an instance", action: "ec2:CreateTags", resource: ARN.instance(), context: tags("aws:ResourceTag", OWN) },
      { name: "version another template", action: "ec2:CreateLaunchTemplateVersion", resource: ARN.template("lt-0fffffffffffffff0") },
      { name: "re-point another template", action: "ec2:ModifyLaunchTemplate", resource: ARN.template("lt-0fffffffffffffff0") },
      // The escalation the image parameter closes: a version of its own template with another
      // instance profile or metadata options, made default, and the group launches it.
      { name: "version its own template", action: "ec2:CreateLaunchTemplateVersion", resource: ARN.template(templateId) },
      { name: "version its own template with another instance profile", action: "ec2:CreateLaunchTemplateVersion", resource: ARN.template(templateId), context: ESCALATION },
      { name: "re-point its own template's default version", action: "ec2:ModifyLaunchTemplate", resource: ARN.template(templateId) },
      { name: "delete its own template's versions", action: "ec2:DeleteLaunchTemplateVersions", resource: ARN.template(templateId) },
      { name: "write another environment's image parameter", action: "ssm:PutParameter", resource: ARN.parameter("/zcp/web/prod/image-id") },
      { name: "write another app's image parameter", action: "ssm:PutParameter", resource: ARN.parameter("/zcp/api/dev/image-id") },
      { name: "write a parameter sharing the name", action: "ssm:PutParameter", resource: ARN.parameter("/zcp/web/dev/image-id-evil") },
      { name: "read other parameters", action: "ssm:GetParameter", resource: ARN.parameter("/zcp/web/dev/database-password") },
      { name: "delete its image parameter", action: "ssm:DeleteParameter", resource: ARN.parameter(IMAGE_PARAMETER) },
      { name: "label its image parameter", action: "ssm:LabelParameterVersion", resource: ARN.parameter(IMAGE_PARAMETER) },
      { name: "launch instances", action: "ec2:RunInstances", resource: ARN.instance() },
      { name: "terminate instances", action: "ec2:TerminateInstances", resource: ARN.instance(), context: tags("aws:ResourceTag", OWN) },
      { name: "pass a role", action: "iam:PassRole", resource: `arn:aws:iam::${ACCOUNT}:role/zcp-web-dev-instance` },
      { name: "change its own policy", action: "iam:PutRolePolicy", resource: `arn:aws:iam::${ACCOUNT}:role/zcp-web-dev-release` },
      { name: "write other state", action: "s3:PutObject", resource: ARN.object("other-project/.pulumi/stacks/x.json", STATE_BACKEND.bucket) },
      { name: "use another KMS key", action: "kms:Decrypt", resource: `arn:aws:kms:${REGION}:${ACCOUNT}:key/ffffffff-0000-0000-0000-000000000000` },
    ],
  );

  matrix(
    "preview",
    [
      { name: "read an artifact", action: "s3:GetObject", resource: ARN.object("releases/web/v1.4.2.tar.gz") },
      { name: "read latest.json", action: "s3:GetObject", resource: ARN.object("releases/web/latest.json") },
      { name: "list the bucket", action: "s3:ListBucket", resource: ARN.bucket() },
      { name: "read the document", action: "ssm:GetDocument", resource: ARN.document("zcp-web-dev-deploy") },
      { name: "look up the GitHub provider", action: "iam:GetOpenIDConnectProvider", resource: PROVIDER_ARN },
      { name: "describe instances", action: "ec2:DescribeInstances", resource: "*" },
      { name: "read release state", action: "s3:GetObject", resource: ARN.object("zcp/web/.pulumi/stacks/release/dev.json", STATE_BACKEND.bucket) },
      { name: "read the image parameter", action: "ssm:GetParameter", resource: ARN.parameter(IMAGE_PARAMETER) },
    ],
    [
      { name: "upload an artifact", action: "s3:PutObject", resource: ARN.object("releases/web/v1.4.2.tar.gz") },
      { name: "move the image parameter", action: "ssm:PutParameter", resource: ARN.parameter(IMAGE_PARAMETER) },
      { name: "move latest.json", action: "s3:PutObject", resource: ARN.object("releases/web/latest.json") },
      { name: "keep or expire an artifact (retention tag)", action: "s3:PutObjectTagging", resource: ARN.object("releases/web/v1.4.2.tar.gz") },
      { name: "send the document", action: "ssm:SendCommand", resource: ARN.document("zcp-web-dev-deploy") },
      { name: "send to its instances", action: "ssm:SendCommand", resource: ARN.instance(), context: tags("ssm:resourceTag", OWN) },
      { name: "create an image", action: "ec2:CreateImage", resource: ARN.instance(), context: tags("aws:ResourceTag", OWN) },
      { name: "version the template", action: "ec2:CreateLaunchTemplateVersion", resource: ARN.template(templateId) },
      { name: "write release state", action: "s3:PutObject", resource: ARN.object("zcp/web/.pulumi/stacks/release/dev.json", STATE_BACKEND.bucket) },
      // Previews run on a throwaway copy of the state (deploy/state-copy.ts) and make no KMS call.
      { name: "decrypt the state's data key", action: "kms:Decrypt", resource: STATE_BACKEND.kmsKeyArn },
      { name: "describe the state key", action: "kms:DescribeKey", resource: STATE_BACKEND.kmsKeyArn },
      { name: "encrypt state secrets", action: "kms:Encrypt", resource: STATE_BACKEND.kmsKeyArn },
      { name: "make a data key", action: "kms:GenerateDataKey", resource: STATE_BACKEND.kmsKeyArn },
      { name: "re-encrypt under another key", action: "kms:ReEncryptFrom", resource: STATE_BACKEND.kmsKeyArn },
      { name: "grant itself the key", action: "kms:CreateGrant", resource: STATE_BACKEND.kmsKeyArn },
      { name: "decrypt with another KMS key", action: "kms:Decrypt", resource: `arn:aws:kms:${REGION}:${ACCOUNT}:key/ffffffff-0000-0000-0000-000000000000` },
      // A preview takes no lock on the DIY backend: lock files are the releases' to write.
      { name: "take the release stack's lock", action: "s3:PutObject", resource: ARN.object("zcp/web/.pulumi/locks/organization/zero-credential-pipeline-release/dev/x.json", STATE_BACKEND.bucket) },
      { name: "delete the release stack's lock", action: "s3:DeleteObject", resource: ARN.object("zcp/web/.pulumi/locks/organization/zero-credential-pipeline-release/dev/x.json", STATE_BACKEND.bucket) },
      { name: "delete a legacy-layout lock", action: "s3:DeleteObject", resource: ARN.object("zcp/web/.pulumi/locks/dev/x.json", STATE_BACKEND.bucket) },
      { name: "take the foundation stack's lock", action: "s3:PutObject", resource: ARN.object("zcp/web/.pulumi/locks/organization/zcp/dev/x.json", STATE_BACKEND.bucket) },
      { name: "delete release state", action: "s3:DeleteObject", resource: ARN.object("zcp/web/.pulumi/stacks/release/dev.json", STATE_BACKEND.bucket) },
      { name: "cancel a command", action: "ssm:CancelCommand", resource: "*" },
      { name: "change the GitHub provider", action: "iam:UpdateOpenIDConnectProviderThumbprint", resource: PROVIDER_ARN },
      { name: "read another app's artifacts", action: "s3:GetObject", resource: ARN.object("releases/api/v1.tar.gz") },
      { name: "read another document", action: "ssm:GetDocument", resource: ARN.document("zcp-api-dev-deploy") },
      { name: "read any command's output", action: "ssm:GetCommandInvocation", resource: "*" },
      { name: "list command invocations", action: "ssm:ListCommandInvocations", resource: "*" },
      { name: "list commands", action: "ssm:ListCommands", resource: "*" },
      { name: "read launch-template user data", action: "ec2:DescribeLaunchTemplateVersions", resource: "*" },
    ],
  );

  matrix(
    "instance",
    [
      { name: "read an artifact", action: "s3:GetObject", resource: ARN.object("releases/web/v1.4.2.tar.gz") },
      { name: "read latest.json", action: "s3:GetObject", resource: ARN.object("releases/web/latest.json") },
      { name: "read the boot agent", action: "s3:GetObject", resource: ARN.object("agents/web/zcp-agent-x.sh") },
    ],
    [
      { name: "write an artifact", action: "s3:PutObject", resource: ARN.object("releases/web/v1.tar.gz") },
      { name: "move latest.json", action: "s3:PutObject", resource: ARN.object("releases/web/latest.json") },
      { name: "read another app's artifacts", action: "s3:GetObject", resource: ARN.object("releases/api/v1.tar.gz") },
      { name: "send commands", action: "ssm:SendCommand", resource: ARN.document("zcp-web-dev-deploy") },
      { name: "create images", action: "ec2:CreateImage", resource: ARN.instance(), context: tags("aws:ResourceTag", OWN) },
    ],
  );
});
