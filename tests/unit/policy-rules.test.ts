import { expect } from "chai";
import type * as ArtifactBucketModule from "../../infra/artifact-bucket.js";
import type * as FleetModule from "../../infra/fleet.js";
import type * as GitHubOidcModule from "../../infra/github-oidc.js";
import type * as RolesModule from "../../infra/roles.js";
import { type PolicySubject, RESOURCE_RULES, STACK_RULES, deniesInsecureTransport, evaluateAll } from "../../policy/rules.js";
import { TAGS, fleetArgs, rolesArgs } from "../fixtures/infra/components.js";
import { BAD, GOOD, T, subject } from "../fixtures/infra/resources.js";
import { type MockRecorder, registered, useMocks, valueOf } from "../helpers/pulumi-mocks.js";
import { asSubject } from "./support/policy-subjects.js";


describe("policy pack rules", () => {
  for (const rule of RESOURCE_RULES) {
    describe(rule.name, () => {
      const bad = BAD[rule.name] ?? [];
      const good = GOOD[rule.name] ?? [];
      it("has bad and good fixtures", () => {
        expect(bad.length, "bad fixtures").to.be.greaterThan(0);
        expect(good.length, "good fixtures").to.be.greaterThan(0);
      });
      bad.forEach((r, i) => {
        it(`flags bad ${r.type.split(":").pop()} #${i + 1}`, () => {
          expect(rule.check(r).length, JSON.stringify(r.props)).to.be.greaterThan(0);
        });
      });
      good.forEach((r, i) => {
        it(`accepts good ${r.type.split(":").pop()} #${i + 1}`, () => {
          expect(rule.check(r)).to.deep.equal([]);
        });
      });
    });
  }

  describe("stack rules: every bucket has its guard resources", () => {
    const bucket = () => subject(T.bucket, { bucket: "zcp-web-dev-1" }, { id: "zcp-web-dev-1", name: "bucket" });
    const complete = (b: PolicySubject) => [
      b,
      ...GOOD["zcp-bucket-not-public"]!.filter((r) => r.type !== T.bucket).map((r) => ({ ...r, props: { ...r.props, bucket: b.id } })),
      ...GOOD["zcp-encryption-on"]!.map((r) => ({ ...r, props: { ...r.props, bucket: b.id } })),
    ];

    it("accept a bucket with a full public access block, encryption and a TLS-only policy", () => {
      for (const rule of STACK_RULES) expect(rule.check(complete(bucket())), rule.name).to.deep.equal([]);
    });

    it("flag a bare bucket once per missing guard", () => {
      const b = bucket();
      const found = STACK_RULES.flatMap((rule) => rule.check([b]).map((v) => `${rule.name}: ${v.message}`));
      expect(found).to.deep.equal([
        "zcp-bucket-not-public-stack: bucket bucket: has no BucketPublicAccessBlock",
        "zcp-encryption-on-stack: bucket bucket: has no BucketServerSideEncryptionConfiguration",
        "zcp-bucket-tls-only: bucket bucket: has no bucket policy denying insecure transport",
      ]);
    });

    it("do not count another bucket's guards", () => {
      const other = subject(T.bucket, { bucket: "other" }, { id: "other", name: "other" });
      const resources = [...complete(bucket()), other];
      expect(evaluateAll(resources).map((v) => v.urn)).to.have.length(3).and.satisfy((urns: string[]) => urns.every((u) => u === other.urn));
    });

    it("match guards by dependency when the bucket's name is not known yet (preview)", () => {
      const b = subject(T.bucket, {}, { name: "new" });
      const guards = complete(b)
        .slice(1)
        .map((r) => ({ ...r, props: { ...r.props, bucket: undefined }, dependencies: [b.urn] }));
      for (const rule of STACK_RULES) expect(rule.check([b, ...guards]), rule.name).to.deep.equal([]);
    });

    it("flag a bucket policy that does not deny plain HTTP", () => {
      const b = bucket();
      const resources = complete(b).map((r) =>
        r.type === T.bucketPolicy ? { ...r, props: { ...r.props, policy: JSON.stringify({ Version: "2012-10-17", Statement: [] }) } } : r,
      );
      expect(STACK_RULES.find((r) => r.name === "zcp-bucket-tls-only")!.check(resources)).to.have.length(1);
      expect(deniesInsecureTransport(undefined)).to.equal(undefined);
    });
  });

  describe("over the components' mocked resources", () => {
    let mocks: MockRecorder;
    let resources: PolicySubject[];
    before(async () => {
      mocks = await useMocks();
      const { ArtifactBucket } = (await import("../../infra/artifact-bucket.js")) as typeof ArtifactBucketModule;
      const { GitHubOidc } = (await import("../../infra/github-oidc.js")) as typeof GitHubOidcModule;
      const { Roles } = (await import("../../infra/roles.js")) as typeof RolesModule;
      const { Fleet } = (await import("../../infra/fleet.js")) as typeof FleetModule;
      const bucket = new ArtifactBucket("pp-artifacts", { app: "web", environment: "dev", region: "eu-west-1", tags: TAGS });
      const oidc = new GitHubOidc("pp-oidc", { create: true, tags: TAGS });
      const roles = new Roles("pp-roles", { ...rolesArgs(), oidcProviderArn: oidc.providerArn, bucketName: bucket.bucketName });
      const fleet = new Fleet("pp-fleet", {
        ...fleetArgs(),
        releaseRoleName: roles.releaseRoleName,
        autoScaling: { create: { minSize: 1, maxSize: 2, desiredCapacity: 1, subnetIds: ["subnet-0aaaaaaaaaaaaaaa1"] } },
      });
      await registered(bucket.policy, bucket.lifecycle, bucket.encryption, roles.releasePolicy, roles.instanceProfile, fleet.autoScalingGroup);
      await valueOf(fleet.releaseImagePolicy.urn);
      resources = mocks.resources.filter((r) => r.name.startsWith("pp-")).map(asSubject);
    });

    it("cover every kind of resource the rules look at", () => {
      expect(resources.map((r) => r.type)).to.include.members([T.bucket, T.publicAccessBlock, T.encryption, T.bucketPolicy, T.role, T.rolePolicy, T.launchTemplate]);
    });

    it("find no violation", () => {
      expect(evaluateAll(resources)).to.deep.equal([]);
    });

    it("find the violation when one guard is weakened", () => {
      const weakened = resources.map((r) =>
        r.type === T.launchTemplate ? { ...r, props: { ...r.props, metadataOptions: { httpTokens: "optional" } } } : r,
      );
      expect(evaluateAll(weakened).map((v) => v.rule)).to.deep.equal(["zcp-imdsv2-required"]);
    });
  });
});
