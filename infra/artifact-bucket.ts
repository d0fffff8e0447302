import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import { artifactPrefix } from "../shared/naming.js";
import { ROLE_ARN_RE, artifactBucketPolicy, partitionOf } from "../shared/policy.js";
import { TAG_RETENTION, type Retention } from "../shared/tags.js";

export interface ArtifactBucketArgs {
  app: string;
  environment: string;
  /** Region of the bucket; decides the ARN partition. */
  region: string;
  /** Days an artifact is kept; 0 keeps artifacts forever. @default 365 */
  retainDays?: number;
  /** Days an overwritten or deleted object version is kept. @default 30 */
  noncurrentRetainDays?: number;
  /**
   * Role ARNs of other environments (prod's release role) that may read this app's release
   * artifacts, for `zcp promote`: GetObject on `releases/<app>/*.tar.gz` only, nothing else.
   * @default [] (no one outside the account)
   */
  promoteReaders?: string[];
  /** Tags for the bucket. @default {} */
  tags?: Record<string, string>;
}

/**
 * Objects at most this big are pointers, not artifacts: the lifecycle rule skips them, so
 * `latest.json` never expires however long ago the last release was.
 */
export const POINTER_MAX_BYTES = 1024;

/**
 * The tag the expiry rule requires. Artifacts are uploaded with it; the artifacts `latest.json`
 * names as current and previous carry `keep` instead (deploy/aws/artifacts.ts
 * `retainReleasedArtifacts`), so they never expire however old they are.
 */
export const EXPIRING_TAG: Readonly<Record<string, Retention>> = { [TAG_RETENTION]: "expire" };

/**
 * The bucket's lifecycle rules: old object versions and abandoned uploads go after a while;
 * artifacts tagged `expire` go `retainDays` after their upload. The artifacts `latest.json`
 * names (tagged `keep`), `latest.json` itself and untagged objects never expire.
 */
export function artifactLifecycleRules(artifactPrefix: string, retainDays: number, noncurrentRetainDays: number): aws.types.input.s3.BucketLifecycleConfigurationRule[] {
  const rules: aws.types.input.s3.BucketLifecycleConfigurationRule[] = [
    {
      id: "expire-noncurrent-versions",
      status: "Enabled",
      filter: {},
      noncurrentVersionExpiration: { noncurrentDays: noncurrentRetainDays },
    },
    {
      id: "abort-incomplete-uploads",
      status: "Enabled",
      filter: {},
      abortIncompleteMultipartUpload: { daysAfterInitiation: 7 },
    },
  ];
  if (retainDays > 0) {
    rules.push({
      id: "expire-old-artifacts",
      status: "Enabled",
      // An And filter matches only objects that meet every condition (S3 user guide,
      // "Lifecycle configuration elements", Filter): artifacts tagged `expire`, never a
      // current or previous release's (`keep`), never the untagged `latest.json`.
      filter: { and: { prefix: `${artifactPrefix}/`, objectSizeGreaterThan: POINTER_MAX_BYTES, tags: { ...EXPIRING_TAG } } },
      expiration: { days: retainDays },
    });
  }
  return rules;
}

/**
 * The artifact bucket: versioned, encrypted, closed to the public, owner-enforced, TLS-only,
 * with a lifecycle for old artifacts. Built from the v7 split resources (one resource per
 * bucket setting) rather than the deprecated inline arguments of `s3.Bucket`.
 */
export class ArtifactBucket extends pulumi.ComponentResource {
  readonly bucket: aws.s3.Bucket;
  readonly ownershipControls: aws.s3.BucketOwnershipControls;
  readonly publicAccessBlock: aws.s3.BucketPublicAccessBlock;
  readonly versioning: aws.s3.BucketVersioning;
  readonly encryption: aws.s3.BucketServerSideEncryptionConfiguration;
  readonly lifecycle: aws.s3.BucketLifecycleConfiguration;
  readonly policy: aws.s3.BucketPolicy;
  readonly bucketName: pulumi.Output<string>;
  readonly bucketArn: pulumi.Output<string>;
  /** `releases/<app>`: where this app's artifacts and `latest.json` live. */
  readonly artifactPrefix: string;

  constructor(name: string, args: ArtifactBucketArgs, opts: pulumi.ComponentResourceOptions = {}) {
    super("zcp:infra:ArtifactBucket", name, {}, opts);
    const retainDays = args.retainDays ?? 365;
    const noncurrentRetainDays = args.noncurrentRetainDays ?? 30;
    if (!Number.isInteger(retainDays) || retainDays < 0) throw new RangeError(`retainDays must be a whole number >= 0, got ${retainDays}`);
    if (!Number.isInteger(noncurrentRetainDays) || noncurrentRetainDays < 1) {
      throw new RangeError(`noncurrentRetainDays must be a whole number >= 1, got ${noncurrentRetainDays}`);
    }
    const promoteReaders = args.promoteReaders ?? [];
    for (const arn of promoteReaders) {
      if (!ROLE_ARN_RE.test(arn)) throw new RangeError(`promoteReaders: must be IAM role ARNs without wildcards, got ${JSON.stringify(arn)}`);
    }
    this.artifactPrefix = artifactPrefix(args.app);

    this.bucket = this.createBucket(name, args);
    this.ownershipControls = this.createOwnershipControls(name);
    this.publicAccessBlock = this.createPublicAccessBlock(name);
    this.versioning = this.createVersioning(name);
    this.encryption = this.createEncryption(name);
    this.lifecycle = this.createLifecycle(name, retainDays, noncurrentRetainDays);
    this.policy = this.createPolicy(name, partitionOf(args.region), args.app, promoteReaders);
    this.bucketName = this.bucket.bucket;
    this.bucketArn = this.bucket.arn;

    this.registerOutputs({ bucketName: this.bucketName, bucketArn: this.bucketArn, artifactPrefix: this.artifactPrefix });
  }

  private createBucket(name: string, args: ArtifactBucketArgs): aws.s3.Bucket {
    return new aws.s3.Bucket(
      `${name}-bucket`,
      {
        // Bucket names are global; a prefix plus Pulumi's random suffix avoids collisions
        // across accounts while keeping the owner readable. The provider caps prefixes at 37.
        bucketPrefix: `zcp-${args.app}-${args.environment}-`.slice(0, 37),
        // Artifacts are the release history: never deleted along with the stack by accident.
        forceDestroy: false,
        tags: args.tags ?? {},
      },
      { parent: this },
    );
  }

  private createOwnershipControls(name: string): aws.s3.BucketOwnershipControls {
    return new aws.s3.BucketOwnershipControls(
      `${name}-ownership`,
      { bucket: this.bucket.id, rule: { objectOwnership: "BucketOwnerEnforced" } },
      { parent: this },
    );
  }

  private createPublicAccessBlock(name: string): aws.s3.BucketPublicAccessBlock {
    return new aws.s3.BucketPublicAccessBlock(
      `${name}-public-access`,
      { bucket: this.bucket.id, blockPublicAcls: true, blockPublicPolicy: true, ignorePublicAcls: true, restrictPublicBuckets: true },
      { parent: this },
    );
  }

  private createVersioning(name: string): aws.s3.BucketVersioning {
    return new aws.s3.BucketVersioning(
      `${name}-versioning`,
      { bucket: this.bucket.id, versioningConfiguration: { status: "Enabled" } },
      { parent: this },
    );
  }

  private createEncryption(name: string): aws.s3.BucketServerSideEncryptionConfiguration {
    // SSE-S3: instances and roles need no KMS grants to read artifacts.
    return new aws.s3.BucketServerSideEncryptionConfiguration(
      `${name}-encryption`,
      { bucket: this.bucket.id, rules: [{ applyServerSideEncryptionByDefault: { sseAlgorithm: "AES256" } }] },
      { parent: this },
    );
  }

  private createLifecycle(name: string, retainDays: number, noncurrentRetainDays: number): aws.s3.BucketLifecycleConfiguration {
    const rules = artifactLifecycleRules(this.artifactPrefix, retainDays, noncurrentRetainDays);
    return new aws.s3.BucketLifecycleConfiguration(
      `${name}-lifecycle`,
      { bucket: this.bucket.id, rules },
      // Lifecycle needs versioning settled first, or S3 may reject noncurrent-version rules.
      { parent: this, dependsOn: [this.versioning] },
    );
  }

  private createPolicy(name: string, partition: string, app: string, promoteReaders: string[]): aws.s3.BucketPolicy {
    return new aws.s3.BucketPolicy(
      `${name}-policy`,
      { bucket: this.bucket.id, policy: this.bucket.bucket.apply((b) => JSON.stringify(artifactBucketPolicy({ partition, bucket: b, app, promoteReaders }))) },
      // A policy written while Block Public Access is still being applied can race it.
      { parent: this, dependsOn: [this.publicAccessBlock] },
    );
  }
}
