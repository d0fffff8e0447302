import { expect } from "chai";
import type * as ArtifactBucketModule from "../../infra/artifact-bucket.js";
import { TAGS } from "../fixtures/infra/components.js";
import { type MockRecorder, optionsRecorder, parentTypeOf, registered, useMocks, valueOf } from "../helpers/pulumi-mocks.js";
import { type LifecycleObject, type LifecycleRule, currentVersionExpiry, expiredBy } from "../fixtures/aws/s3-lifecycle.js";
import { decide } from "./support/iam-engine.js";

const TYPE = {
  bucket: "aws:s3/bucket:Bucket",
  ownership: "aws:s3/bucketOwnershipControls:BucketOwnershipControls",
  publicAccess: "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
  versioning: "aws:s3/bucketVersioning:BucketVersioning",
  encryption: "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
  lifecycle: "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
  policy: "aws:s3/bucketPolicy:BucketPolicy",
};

describe("infra: ArtifactBucket", () => {
  let mocks: MockRecorder;
  let mod: typeof ArtifactBucketModule;
  before(async () => {
    mocks = await useMocks();
    mod = await import("../../infra/artifact-bucket.js");
  });

  async function build(name: string, extra: Partial<ArtifactBucketModule.ArtifactBucketArgs> = {}) {
    const { transformation, records } = optionsRecorder();
    const c = new mod.ArtifactBucket(
      name,
      { app: "web", environment: "dev", region: "eu-west-1", tags: TAGS, ...extra },
      { transformations: [transformation] },
    );
    const urns = await registered(c.bucket, c.ownershipControls, c.publicAccessBlock, c.versioning, c.encryption, c.lifecycle, c.policy);
    return { c, records, urns, bucketName: await valueOf(c.bucketName) };
  }

  it("creates the bucket and one settings resource per concern, all children of the component", async () => {
    const { c, urns, bucketName } = await build("ab1");
    expect(mocks.named("ab1").map((r) => `${r.type} ${r.name}`)).to.have.members([
      `zcp:infra:ArtifactBucket ab1`,
      `${TYPE.bucket} ab1-bucket`,
      `${TYPE.ownership} ab1-ownership`,
      `${TYPE.publicAccess} ab1-public-access`,
      `${TYPE.versioning} ab1-versioning`,
      `${TYPE.encryption} ab1-encryption`,
      `${TYPE.lifecycle} ab1-lifecycle`,
      `${TYPE.policy} ab1-policy`,
    ]);
    for (const urn of urns) expect(parentTypeOf(urn), urn).to.equal("zcp:infra:ArtifactBucket");
    expect(bucketName).to.match(/^zcp-web-dev-/);
    expect(await valueOf(c.bucketArn)).to.equal(`arn:aws:s3:::${bucketName}`);
    expect(c.artifactPrefix).to.equal("releases/web");
  });

  it("names, tags and protects the bucket", async () => {
    await build("ab2");
    expect(mocks.get(TYPE.bucket, "ab2-bucket").inputs).to.deep.include({ bucketPrefix: "zcp-web-dev-", forceDestroy: false, tags: TAGS });
  });

  it("blocks public access, enforces the owner, versions and encrypts, each on this bucket", async () => {
    const { bucketName } = await build("ab3");
    const on = (type: string, name: string) => mocks.get(type, name).inputs;
    expect(on(TYPE.publicAccess, "ab3-public-access")).to.deep.equal({
      bucket: bucketName,
      blockPublicAcls: true,
      blockPublicPolicy: true,
      ignorePublicAcls: true,
      restrictPublicBuckets: true,
    });
    expect(on(TYPE.ownership, "ab3-ownership")).to.deep.equal({ bucket: bucketName, rule: { objectOwnership: "BucketOwnerEnforced" } });
    expect(on(TYPE.versioning, "ab3-versioning")).to.deep.equal({ bucket: bucketName, versioningConfiguration: { status: "Enabled" } });
    expect(on(TYPE.encryption, "ab3-encryption")).to.deep.equal({
      bucket: bucketName,
      rules: [{ applyServerSideEncryptionByDefault: { sseAlgorithm: "AES256" } }],
    });
  });

  it("expires old artifacts but never latest.json, old versions and abandoned uploads", async () => {
    await build("ab4", { retainDays: 90, noncurrentRetainDays: 14 });
    const rules = mocks.get(TYPE.lifecycle, "ab4-lifecycle").inputs["rules"] as Record<string, unknown>[];
    expect(rules).to.deep.equal([
      { id: "expire-noncurrent-versions", status: "Enabled", filter: {}, noncurrentVersionExpiration: { noncurrentDays: 14 } },
      { id: "abort-incomplete-uploads", status: "Enabled", filter: {}, abortIncompleteMultipartUpload: { daysAfterInitiation: 7 } },
      {
        id: "expire-old-artifacts",
        status: "Enabled",
        filter: { and: { prefix: "releases/web/", objectSizeGreaterThan: mod.POINTER_MAX_BYTES, tags: { "zcp:retention": "expire" } } },
        expiration: { days: 90 },
      },
    ]);
  });

  it("never expires the artifacts latest.json names, however old, nor latest.json; expires an old artifact that is neither (S3 lifecycle filter rules)", async () => {
    await build("ab9", { retainDays: 365 });
    const rules = mocks.get(TYPE.lifecycle, "ab9-lifecycle").inputs["rules"] as LifecycleRule[];
    const uploaded = new Date("2026-01-10T08:00:00Z");
    const artifact = (version: string, retention?: string): LifecycleObject => ({
      key: `releases/web/${version}.tar.gz`,
      size: 5_000_000,
      tags: retention ? { "zcp:retention": retention } : {},
      created: uploaded,
    });
    const tenYearsOn = new Date("2036-01-10T00:00:00Z");
    // What a release leaves (deploy/aws/artifacts.ts): current and previous `keep`, the rest `expire`.
    expect(expiredBy(rules, artifact("v3", "keep"), tenYearsOn), "current").to.equal(false);
    expect(expiredBy(rules, artifact("v2", "keep"), tenYearsOn), "previous").to.equal(false);
    expect(expiredBy(rules, { key: "releases/web/latest.json", size: 300, tags: {}, created: uploaded }, tenYearsOn), "latest.json").to.equal(false);
    // Uploaded before retention tags existed: kept until a release tags it.
    expect(expiredBy(rules, artifact("v0"), tenYearsOn), "untagged").to.equal(false);
    // An artifact that fell out of latest.json: 365 days after upload, at the next midnight UTC.
    expect(currentVersionExpiry(rules, artifact("v1", "expire"))?.toISOString()).to.equal("2027-01-11T00:00:00.000Z");
    expect(expiredBy(rules, artifact("v1", "expire"), new Date("2027-01-10T23:59:59Z"))).to.equal(false);
    expect(expiredBy(rules, artifact("v1", "expire"), new Date("2027-01-11T00:00:00Z"))).to.equal(true);
    // Another app's artifact in the same bucket is not this rule's.
    expect(expiredBy(rules, { ...artifact("v1", "expire"), key: "releases/api/v1.tar.gz" }, tenYearsOn)).to.equal(false);
  });

  it("keeps artifacts forever with retainDays 0", async () => {
    await build("ab5", { retainDays: 0 });
    const rules = mocks.get(TYPE.lifecycle, "ab5-lifecycle").inputs["rules"] as { id: string }[];
    expect(rules.map((r) => r.id)).to.deep.equal(["expire-noncurrent-versions", "abort-incomplete-uploads"]);
  });

  it("orders the policy after the public access block and the lifecycle after versioning", async () => {
    const { c, records } = await build("ab6");
    const opts = (name: string) => records.find((r) => r.name === name)!.opts;
    expect(opts("ab6-policy").dependsOn).to.deep.equal([c.publicAccessBlock]);
    expect(opts("ab6-lifecycle").dependsOn).to.deep.equal([c.versioning]);
    expect(opts("ab6-bucket").parent).to.equal(c);
  });

  it("refuses every request that does not use TLS 1.2+ (evaluated by an IAM engine)", async () => {
    const { bucketName } = await build("ab7");
    const policy = JSON.parse(mocks.get(TYPE.policy, "ab7-policy").inputs["policy"] as string) as object;
    const ask = (context: Record<string, string>) =>
      decide({
        principal: "arn:aws:sts::111111111111:assumed-role/zcp-web-dev-release/gh",
        action: "s3:GetObject",
        resource: `arn:aws:s3:::${bucketName}/releases/web/v1.tar.gz`,
        resourceAccount: "111111111111",
        context,
        identityPolicies: [{ Version: "2012-10-17", Statement: [{ Effect: "Allow", Action: "s3:GetObject", Resource: "*" }] }],
        resourcePolicy: policy,
      });
    expect(ask({ "aws:SecureTransport": "false", "s3:TlsVersion": "1.2" })).to.equal("ExplicitlyDenied");
    expect(ask({ "aws:SecureTransport": "true", "s3:TlsVersion": "1.1" })).to.equal("ExplicitlyDenied");
    expect(ask({ "aws:SecureTransport": "true", "s3:TlsVersion": "1.3" })).to.equal("Allowed");
  });

  it("lets the promote readers read the app's artifacts, across accounts, and nothing else (evaluated by an IAM engine)", async () => {
    const reader = "arn:aws:iam::222222222222:role/zcp-web-prod-release";
    const { bucketName } = await build("ab10", { promoteReaders: [reader] });
    const policy = JSON.parse(mocks.get(TYPE.policy, "ab10-policy").inputs["policy"] as string) as { Statement: object[] };
    expect(policy.Statement.at(-1)).to.deep.equal({
      Sid: "PromoteReaders",
      Effect: "Allow",
      Principal: { AWS: "arn:aws:iam::222222222222:root" },
      Action: "s3:GetObject",
      Resource: `arn:aws:s3:::${bucketName}/releases/web/*.tar.gz`,
      Condition: { ArnEquals: { "aws:PrincipalArn": reader } },
    });
    const anything = [{ Version: "2012-10-17", Statement: [{ Effect: "Allow", Action: "s3:*", Resource: "*" }] }];
    const ask = (role: string, action: string, key: string, account = "222222222222") =>
      decide({
        principal: `arn:aws:sts::${account}:assumed-role/${role}/gh`,
        action,
        resource: key === "" ? `arn:aws:s3:::${bucketName}` : `arn:aws:s3:::${bucketName}/${key}`,
        resourceAccount: "111111111111",
        context: { "aws:PrincipalArn": `arn:aws:iam::${account}:role/${role}`, "aws:SecureTransport": "true", "s3:TlsVersion": "1.3" },
        // The other side's identity policy allows everything: only the bucket policy decides.
        identityPolicies: anything,
        resourcePolicy: policy,
      });
    expect(ask("zcp-web-prod-release", "s3:GetObject", "releases/web/v1.4.2.tar.gz")).to.equal("Allowed");
    expect(ask("zcp-web-prod-preview", "s3:GetObject", "releases/web/v1.4.2.tar.gz")).to.not.equal("Allowed");
    expect(ask("zcp-web-prod-release", "s3:GetObject", "releases/web/v1.4.2.tar.gz", "333333333333")).to.not.equal("Allowed");
    expect(ask("zcp-web-prod-release", "s3:GetObject", "releases/web/latest.json")).to.not.equal("Allowed");
    expect(ask("zcp-web-prod-release", "s3:GetObject", "releases/api/v1.tar.gz")).to.not.equal("Allowed");
    expect(ask("zcp-web-prod-release", "s3:PutObject", "releases/web/v9.tar.gz")).to.not.equal("Allowed");
    expect(ask("zcp-web-prod-release", "s3:ListBucket", "")).to.not.equal("Allowed");
  });

  it("refuses a promote reader that is not a role ARN, or has a wildcard", () => {
    for (const reader of ["arn:aws:iam::222222222222:role/zcp-*", "arn:aws:iam::222222222222:root", "*"]) {
      expect(() => new mod.ArtifactBucket("ab11", { app: "web", environment: "dev", region: "eu-west-1", promoteReaders: [reader] }), reader).to.throw(
        RangeError,
        /promoteReaders/,
      );
    }
  });

  it("rejects a negative retention", () => {
    expect(() => new mod.ArtifactBucket("ab8", { app: "web", environment: "dev", region: "eu-west-1", retainDays: -1 })).to.throw(RangeError);
  });
});
