/**
 * `zcp promote` across accounts, as the foundation deploys it: dev's artifact bucket policy
 * (`zcp:artifacts.promoteReaders`) and prod's release role (`zcp:artifacts.promoteFrom`),
 * evaluated together by an IAM policy engine. A cross-account read is allowed only when both
 * the caller's identity policy and the bucket's policy allow it.
 */
import { expect } from "chai";
import type * as ArtifactBucketModule from "../../infra/artifact-bucket.js";
import type * as RolesModule from "../../infra/roles.js";
import { rolesArgs } from "../fixtures/infra/components.js";
import { type MockRecorder, registered, useMocks, valueOf } from "../helpers/pulumi-mocks.js";
import { decide } from "./support/iam-engine.js";

const DEV = "111111111111";
const PROD = "222222222222";
const PROD_RELEASE = `arn:aws:iam::${PROD}:role/zcp-web-prod-release`;

describe("promote grants under an IAM engine (dev bucket, prod roles)", () => {
  let mocks: MockRecorder;
  let devBucket: string;
  let bucketPolicy: object;
  let tlsOnlyPolicy: object;
  let prod: { release: object[]; preview: object[]; instance: object[] };

  before(async () => {
    mocks = await useMocks();
    const { ArtifactBucket } = (await import("../../infra/artifact-bucket.js")) as typeof ArtifactBucketModule;
    const { Roles } = (await import("../../infra/roles.js")) as typeof RolesModule;
    const dev = new ArtifactBucket("promote-dev", { app: "web", environment: "dev", region: "eu-west-1", promoteReaders: [PROD_RELEASE] });
    const plain = new ArtifactBucket("promote-plain", { app: "web", environment: "dev", region: "eu-west-1" });
    await registered(dev.policy, plain.policy);
    devBucket = await valueOf(dev.bucketName);
    const policyOf = (name: string) => JSON.parse(mocks.get("aws:s3/bucketPolicy:BucketPolicy", name).inputs["policy"] as string) as object;
    bucketPolicy = policyOf("promote-dev-policy");
    tlsOnlyPolicy = policyOf("promote-plain-policy");

    const roles = new Roles("promote-prod", {
      ...rolesArgs({ bucketName: "zcp-web-prod-def5678" }),
      environment: "prod",
      accountId: PROD,
      oidcProviderArn: `arn:aws:iam::${PROD}:oidc-provider/token.actions.githubusercontent.com`,
      documentName: "zcp-web-prod-deploy",
      promoteFrom: { bucket: devBucket, accountId: DEV },
    });
    await registered(roles.releasePolicy, roles.previewPolicy, roles.instancePolicy);
    const identity = (name: string) => [JSON.parse(mocks.get("aws:iam/rolePolicy:RolePolicy", name).inputs["policy"] as string) as object];
    prod = { release: identity("promote-prod-release-policy"), preview: identity("promote-prod-preview-policy"), instance: identity("promote-prod-instance-policy") };
  });

  interface Ask {
    role?: string;
    account?: string;
    identity?: object[];
    action?: string;
    key?: string;
    bucket?: string;
    bucketAccount?: string;
    resourcePolicy?: object;
  }

  function ask(a: Ask = {}) {
    const account = a.account ?? PROD;
    const role = a.role ?? "zcp-web-prod-release";
    const bucket = a.bucket ?? devBucket;
    const bucketAccount = a.bucketAccount ?? DEV;
    const key = a.key ?? "releases/web/v1.4.2.tar.gz";
    return decide({
      principal: `arn:aws:sts::${account}:assumed-role/${role}/gh`,
      action: a.action ?? "s3:GetObject",
      resource: key === "" ? `arn:aws:s3:::${bucket}` : `arn:aws:s3:::${bucket}/${key}`,
      resourceAccount: bucketAccount,
      context: {
        "aws:PrincipalArn": `arn:aws:iam::${account}:role/${role}`,
        "aws:PrincipalAccount": account,
        "s3:ResourceAccount": bucketAccount,
        "aws:SecureTransport": "true",
        "s3:TlsVersion": "1.3",
      },
      identityPolicies: a.identity ?? prod.release,
      resourcePolicy: a.resourcePolicy ?? bucketPolicy,
    });
  }

  /** What a role of prod could hold at worst: every S3 action, everywhere. */
  const anything = [{ Version: "2012-10-17", Statement: [{ Effect: "Allow", Action: "s3:*", Resource: "*" }] }];

  it("allows prod's release role to read (HEAD and GET) a release artifact in dev's bucket", () => {
    expect(ask()).to.equal("Allowed");
  });

  it("needs both grants: not without dev's bucket statement, not without the release role's statement", () => {
    expect(ask({ resourcePolicy: tlsOnlyPolicy })).to.not.equal("Allowed");
    expect(ask({ identity: [] })).to.not.equal("Allowed");
  });

  const denied: [string, Ask][] = [
    ["prod's preview role", { role: "zcp-web-prod-preview", identity: [] }],
    ["prod's preview role, even with every S3 right of its own", { role: "zcp-web-prod-preview", identity: anything }],
    ["prod's instance role", { role: "zcp-web-prod-instance", identity: anything }],
    ["another role of prod's account with every S3 right", { role: "ops-admin", identity: anything }],
    ["a role of the same name in a third account", { account: "333333333333", identity: anything }],
    ["dev's latest.json", { key: "releases/web/latest.json" }],
    ["another app's artifact", { key: "releases/api/v1.4.2.tar.gz" }],
    ["an app whose name starts the same", { key: "releases/web-evil/v1.4.2.tar.gz" }],
    ["an object outside releases/", { key: "agents/web/zcp-agent-x.sh" }],
    ["dev's state or other files", { key: "zcp/web/.pulumi/stacks/release/dev.json" }],
    ["a write to dev's bucket", { action: "s3:PutObject", key: "releases/web/v9.tar.gz" }],
    ["a write, even with every S3 right of its own", { action: "s3:PutObject", key: "releases/web/v9.tar.gz", identity: anything }],
    ["a delete", { action: "s3:DeleteObject", identity: anything }],
    ["retagging dev's artifact", { action: "s3:PutObjectTagging", identity: anything }],
    ["listing dev's bucket", { action: "s3:ListBucket", key: "", identity: anything }],
    ["reading a bucket of that name owned by another account", { bucketAccount: "333333333333", resourcePolicy: { Version: "2012-10-17", Statement: [{ Effect: "Allow", Principal: "*", Action: "s3:GetObject", Resource: "*" }] } }],
  ];
  for (const [name, a] of denied) {
    it(`denies ${name}`, () => {
      expect(ask(a)).to.not.equal("Allowed");
    });
  }

  it("denies a read of the artifact without TLS, explicitly", () => {
    const r = decide({
      principal: `arn:aws:sts::${PROD}:assumed-role/zcp-web-prod-release/gh`,
      action: "s3:GetObject",
      resource: `arn:aws:s3:::${devBucket}/releases/web/v1.4.2.tar.gz`,
      resourceAccount: DEV,
      context: { "aws:PrincipalArn": PROD_RELEASE, "s3:ResourceAccount": DEV, "aws:SecureTransport": "false", "s3:TlsVersion": "1.3" },
      identityPolicies: prod.release,
      resourcePolicy: bucketPolicy,
    });
    expect(r).to.equal("ExplicitlyDenied");
  });
});
