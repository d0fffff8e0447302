/**
 * Typed IAM policy documents, and the pure builders for every policy zcp attaches: the
 * GitHub OIDC trust policies, the release / preview / instance role permissions and the
 * artifact bucket's TLS-only policy. Nothing here talks to AWS or Pulumi, so the same
 * documents are what the foundation deploys and what the unit tests evaluate with an IAM
 * policy engine.
 */
import { artifactPrefix } from "./naming.js";
import { TAG_APP, TAG_ENV } from "./tags.js";

export type Effect = "Allow" | "Deny";

/** The condition operators zcp uses; deliberately no `ForAllValues:` / `ForAnyValue:` sets. */
export type ConditionOperator =
  | "StringEquals"
  | "StringEqualsIfExists"
  | "StringLike"
  | "ArnEquals"
  | "Bool"
  | "NumericLessThan";

export type ConditionBlock = { [op in ConditionOperator]?: Record<string, string | string[]> };

export type Principal = "*" | { AWS?: string | string[]; Federated?: string; Service?: string | string[] };

export interface PolicyStatement {
  Sid?: string;
  Effect: Effect;
  Principal?: Principal;
  Action: string | string[];
  Resource?: string | string[];
  Condition?: ConditionBlock;
}

export interface PolicyDocument {
  Version: "2012-10-17";
  Statement: PolicyStatement[];
}

export function policyDocument(statements: PolicyStatement[]): PolicyDocument {
  return { Version: "2012-10-17", Statement: statements };
}

// ---------------------------------------------------------------------------------------
// GitHub OIDC
// ---------------------------------------------------------------------------------------

export const GITHUB_OIDC_HOST = "token.actions.githubusercontent.com";
export const GITHUB_OIDC_URL = `https://${GITHUB_OIDC_HOST}`;
/** The audience configure-aws-credentials requests, and the only one the roles accept. */
export const STS_AUDIENCE = "sts.amazonaws.com";
export const GITHUB_AUD_KEY = `${GITHUB_OIDC_HOST}:aud`;
export const GITHUB_SUB_KEY = `${GITHUB_OIDC_HOST}:sub`;

export interface GitHubRepository {
  owner: string;
  repo: string;
  /** Numeric owner id; with `repoId`, adds the immutable subject form. */
  ownerId?: string | undefined;
  repoId?: string | undefined;
}

/** Which workflow runs a role trusts: jobs bound to one GitHub environment, or pull requests. */
export type GitHubSubjectContext = { environment: string } | "pull_request";

/** Characters that would turn a subject into a pattern or shift its fields. */
const UNSAFE_SUBJECT_PART = /[*?:/@\s]/;

/**
 * The exact `sub` claims a role accepts: the name form `repo:OWNER/REPO:…` and, when both
 * ids are known, the immutable id form `repo:OWNER@OWNER_ID/REPO@REPO_ID:…` that
 * repositories created from July 2026 emit (and that survives a rename).
 */
export function githubSubjects(repository: GitHubRepository, context: GitHubSubjectContext): string[] {
  const parts = [repository.owner, repository.repo, repository.ownerId, repository.repoId];
  if (typeof context !== "string") parts.push(context.environment);
  for (const part of parts) {
    // Config validation already rejects these; this guard keeps the builder safe on its own.
    if (part !== undefined && (part === "" || UNSAFE_SUBJECT_PART.test(part))) {
      throw new Error(`unsafe value in a GitHub subject: ${JSON.stringify(part)}`);
    }
  }
  const suffix = context === "pull_request" ? "pull_request" : `environment:${context.environment}`;
  const subjects = [`repo:${repository.owner}/${repository.repo}:${suffix}`];
  if (repository.ownerId !== undefined && repository.repoId !== undefined) {
    subjects.push(`repo:${repository.owner}@${repository.ownerId}/${repository.repo}@${repository.repoId}:${suffix}`);
  }
  return subjects;
}

/**
 * A role trust policy for GitHub Actions: the account's GitHub OIDC provider, audience
 * pinned to `sts.amazonaws.com`, subject pinned to exact values with `StringEquals` (never
 * `StringLike`, so `OWNER/REPO-evil` or another branch can never match).
 */
export function githubTrustPolicy(providerArn: string, subjects: readonly string[]): PolicyDocument {
  if (subjects.length === 0) throw new Error("a GitHub trust policy needs at least one subject");
  return policyDocument([
    {
      Sid: "GitHubActions",
      Effect: "Allow",
      Principal: { Federated: providerArn },
      Action: "sts:AssumeRoleWithWebIdentity",
      Condition: {
        StringEquals: {
          [GITHUB_AUD_KEY]: STS_AUDIENCE,
          [GITHUB_SUB_KEY]: subjects.length === 1 ? subjects[0]! : [...subjects],
        },
      },
    },
  ]);
}

// ---------------------------------------------------------------------------------------
// ARNs
// ---------------------------------------------------------------------------------------

/** The AWS partition a region belongs to. */
export function partitionOf(region: string): string {
  if (region.startsWith("cn-")) return "aws-cn";
  if (region.startsWith("us-gov-")) return "aws-us-gov";
  return "aws";
}

export function bucketArn(partition: string, bucket: string): string {
  return `arn:${partition}:s3:::${bucket}`;
}

export function objectArn(partition: string, bucket: string, keyPattern: string): string {
  return `arn:${partition}:s3:::${bucket}/${keyPattern}`;
}

export function documentArn(partition: string, region: string, accountId: string, documentName: string): string {
  return `arn:${partition}:ssm:${region}:${accountId}:document/${documentName}`;
}

export function instanceArn(partition: string, region: string, accountId: string, instanceId = "*"): string {
  return `arn:${partition}:ec2:${region}:${accountId}:instance/${instanceId}`;
}

/** AMI and snapshot ARNs carry no account: `arn:aws:ec2:REGION::image/ami-…`. */
export function imageArn(partition: string, region: string, imageId = "*"): string {
  return `arn:${partition}:ec2:${region}::image/${imageId}`;
}

export function snapshotArn(partition: string, region: string, snapshotId = "*"): string {
  return `arn:${partition}:ec2:${region}::snapshot/${snapshotId}`;
}

export function launchTemplateArn(partition: string, region: string, accountId: string, templateId: string): string {
  return `arn:${partition}:ec2:${region}:${accountId}:launch-template/${templateId}`;
}

/** Key prefix of the boot-time copies of the deploy agent (outside the release prefix). */
export function agentPrefix(app: string): string {
  return `agents/${app}`;
}

// ---------------------------------------------------------------------------------------
// Role permissions
// ---------------------------------------------------------------------------------------

/** Where the Pulumi state of the release stack lives, when the role must reach it. */
export interface StateBackendScope {
  bucket: string;
  /** Key prefix inside the bucket (no leading or trailing slash). @default the whole bucket */
  keyPrefix?: string | undefined;
  /** KMS key of the `awskms://` secrets provider. */
  kmsKeyArn?: string | undefined;
}

/** Everything a role's permissions are scoped by. */
export interface RoleScope {
  partition: string;
  region: string;
  accountId: string;
  app: string;
  environment: string;
  /** Artifact bucket name. */
  bucket: string;
  /** Name of the zcp deploy document. */
  documentName: string;
  stateBackend?: StateBackendScope | undefined;
}

/**
 * Actions AWS only authorizes on `Resource: "*"` (no resource-level permissions). They only
 * read; every write below is scoped by ARN and tags.
 */
export const RELEASE_DESCRIBE_ACTIONS = [
  "autoscaling:DescribeAutoScalingGroups",
  "autoscaling:DescribeAutoScalingInstances",
  "ec2:DescribeImages",
  "ec2:DescribeInstances",
  "ec2:DescribeInstanceStatus",
  "ec2:DescribeLaunchTemplates",
  "ec2:DescribeLaunchTemplateVersions",
  "ec2:DescribeSnapshots",
  "ec2:DescribeTags",
  "elasticloadbalancing:DescribeTargetHealth",
  "ssm:DescribeInstanceInformation",
  "ssm:GetCommandInvocation",
  "ssm:ListCommandInvocations",
  "ssm:ListCommands",
] as const;

/**
 * What a preview describes: the release's describe actions without the ones that read other
 * things than the fleet's shape: command output (`ssm:GetCommandInvocation`,
 * `ListCommandInvocations`, `ListCommands`: any command's output in the account, which can
 * carry what a deploy printed) and launch-template versions (their user data).
 */
export const PREVIEW_DESCRIBE_ACTIONS = RELEASE_DESCRIBE_ACTIONS.filter(
  (a) => !["ssm:GetCommandInvocation", "ssm:ListCommandInvocations", "ssm:ListCommands", "ec2:DescribeLaunchTemplateVersions"].includes(a),
);

function tagEquals(prefix: "aws:ResourceTag" | "ssm:resourceTag" | "aws:RequestTag", tags: Record<string, string>) {
  return Object.fromEntries(Object.entries(tags).map(([k, v]) => [`${prefix}/${k}`, v]));
}

/**
 * `s3:ListBucket` is granted on the whole bucket, not under a prefix condition: without it
 * S3 answers a GetObject / HeadObject of a missing key with 403 instead of 404, and "no
 * `latest.json` yet" or "no state file yet" are normal states that must read as 404. Listing
 * reveals key names only, and the artifact bucket holds this app and environment alone.
 */
function listBucket(sid: string, partition: string, bucket: string): PolicyStatement {
  return { Sid: sid, Effect: "Allow", Action: ["s3:GetBucketLocation", "s3:ListBucket"], Resource: bucketArn(partition, bucket) };
}
function stateBackendStatements(scope: StateBackendScope | undefined, partition: string, write: boolean): PolicyStatement[] {
  if (!scope) return [];
  const keys = scope.keyPrefix ? `${scope.keyPrefix}/*` : "*";
  const statements: PolicyStatement[] = [
    listBucket("StateBackendList", partition, scope.bucket),
    {
      Sid: "StateBackendRead",
      Effect: "Allow",
      Action: "s3:GetObject",
      Resource: objectArn(partition, scope.bucket, keys),
    },
  ];
  // A preview writes nothing to the backend: Pulumi's DIY (S3) backend locks a stack for
  // update, import, refresh and destroy, never for a preview (pulumi/pulumi
  // pkg/backend/diy/backend.go: Preview runs the engine as a dry run without b.Lock, and saves
  // no checkpoint or history for one), and no environment variable turns that lock on.
  if (write) {
    statements.push({
      Sid: "StateBackendWrite",
      Effect: "Allow",
      Action: ["s3:PutObject", "s3:DeleteObject"],
      Resource: objectArn(partition, scope.bucket, keys),
    });
  }
  if (scope.kmsKeyArn) {
    // Decrypt stays for previews: loading a state whose secrets provider is awskms decrypts the
    // stack's data key at once, whether or not the state holds any secret value (pulumi/pulumi
    // pkg/secrets/cloud/manager.go, newCloudSecretsManager calls keeper.Decrypt; a preview
    // deserializes the checkpoint with secrets.DefaultProvider, and --show-secrets only changes
    // what is displayed). Without it neither the foundation's `pulumi preview` nor `zcp
    // preview` of an existing release stack can run. See docs/security.md, "Known limits".
    statements.push({
      Sid: "StateSecrets",
      Effect: "Allow",
      Action: write ? ["kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GenerateDataKey"] : ["kms:Decrypt", "kms:DescribeKey"],
      Resource: scope.kmsKeyArn,
    });
  }
  return statements;
}

/**
 * The release role: uploads artifacts and moves `latest.json` in its own prefix, sends only
 * the zcp deploy document and only to instances tagged with its app and environment, bakes
 * images only from those instances (tagged with its app at creation), and retires only
 * images and snapshots tagged with its app. Launch-template rights are granted separately
 * by the template's owner (`launchTemplateReleasePolicy`).
 */
export function releaseRolePolicy(s: RoleScope): PolicyDocument {
  const { partition: p, region, accountId } = s;
  const prefix = artifactPrefix(s.app);
  const ownTags = { [TAG_APP]: s.app, [TAG_ENV]: s.environment };
  return policyDocument([
    listBucket("ArtifactsList", p, s.bucket),
    {
      // Includes `latest.json` (read, then compare-and-swap write).
      Sid: "ArtifactsReadWrite",
      Effect: "Allow",
      Action: ["s3:AbortMultipartUpload", "s3:GetObject", "s3:GetObjectAttributes", "s3:PutObject"],
      Resource: objectArn(p, s.bucket, `${prefix}/*`),
    },
    {
      Sid: "SendDeployDocument",
      Effect: "Allow",
      Action: "ssm:SendCommand",
      Resource: documentArn(p, region, accountId, s.documentName),
    },
    {
      Sid: "SendToOwnInstances",
      Effect: "Allow",
      Action: "ssm:SendCommand",
      Resource: instanceArn(p, region, accountId),
      Condition: { StringEquals: tagEquals("ssm:resourceTag", ownTags) },
    },
    {
      // A command that hangs past its timeout is cancelled; CancelCommand has no resource type.
      Sid: "CancelCommands",
      Effect: "Allow",
      Action: ["ssm:CancelCommand"],
      Resource: "*",
    },
    {
      Sid: "Describe",
      Effect: "Allow",
      Action: [...RELEASE_DESCRIBE_ACTIONS],
      Resource: "*",
    },
    {
      Sid: "ImageFromOwnInstances",
      Effect: "Allow",
      Action: "ec2:CreateImage",
      Resource: instanceArn(p, region, accountId),
      Condition: { StringEquals: tagEquals("aws:ResourceTag", ownTags) },
    },
    {
      // The new image must carry this app's tag from its first moment (TagSpecifications),
      // which is what lets the role retire it later and nothing else.
      Sid: "CreateTaggedImage",
      Effect: "Allow",
      Action: "ec2:CreateImage",
      Resource: imageArn(p, region),
      Condition: { StringEquals: tagEquals("aws:RequestTag", { [TAG_APP]: s.app }) },
    },
    {
      Sid: "CreateImageSnapshots",
      Effect: "Allow",
      Action: "ec2:CreateImage",
      Resource: snapshotArn(p, region),
    },
    {
      Sid: "TagImagesOnCreate",
      Effect: "Allow",
      Action: "ec2:CreateTags",
      Resource: [imageArn(p, region), snapshotArn(p, region)],
      Condition: { StringEquals: { "ec2:CreateAction": "CreateImage" } },
    },
    {
      // Later tags (version, sha256) on its own images; it may not relabel them as another app's.
      Sid: "TagOwnImages",
      Effect: "Allow",
      Action: "ec2:CreateTags",
      Resource: [imageArn(p, region), snapshotArn(p, region)],
      Condition: {
        StringEquals: tagEquals("aws:ResourceTag", { [TAG_APP]: s.app }),
        StringEqualsIfExists: tagEquals("aws:RequestTag", { [TAG_APP]: s.app }),
      },
    },
    {
      Sid: "RetireOwnImages",
      Effect: "Allow",
      Action: ["ec2:DeregisterImage", "ec2:DeleteSnapshot"],
      Resource: [imageArn(p, region), snapshotArn(p, region)],
      Condition: { StringEquals: tagEquals("aws:ResourceTag", { [TAG_APP]: s.app }) },
    },
    ...stateBackendStatements(s.stateBackend, p, true),
  ]);
}

/** What the release role may do to the one launch template it releases into. */
export function launchTemplateReleasePolicy(s: {
  partition: string;
  region: string;
  accountId: string;
  launchTemplateId: string;
}): PolicyDocument {
  return policyDocument([
    {
      Sid: "ReleaseIntoOwnLaunchTemplate",
      Effect: "Allow",
      Action: ["ec2:CreateLaunchTemplateVersion", "ec2:ModifyLaunchTemplate", "ec2:DeleteLaunchTemplateVersions"],
      Resource: launchTemplateArn(s.partition, s.region, s.accountId, s.launchTemplateId),
    },
  ]);
}

/** What a release's traffic control and alarm gates touch (see deploy/traffic/). */
export interface TrafficScope {
  partition: string;
  region: string;
  accountId: string;
  /** The group whose instances go to standby and back (`asg-standby`). @default none */
  autoScalingGroupName?: string | undefined;
  /** Target groups instances are deregistered from and registered with (`target-group`). @default [] */
  targetGroupArns: readonly string[];
  /** CloudWatch alarms that gate a release. @default [] */
  alarmNames: readonly string[];
}

export function autoScalingGroupArn(partition: string, region: string, accountId: string, name: string): string {
  // The group id part is a UUID AWS assigns; the friendly name is what the foundation knows.
  return `arn:${partition}:autoscaling:${region}:${accountId}:autoScalingGroup:*:autoScalingGroupName/${name}`;
}

export function alarmArn(partition: string, region: string, accountId: string, name: string): string {
  return `arn:${partition}:cloudwatch:${region}:${accountId}:alarm:${name}`;
}

/**
 * The release role's rights for traffic control, kept apart from its main policy: standby
 * in its own group only, deregistration and registration in the named target groups only,
 * and the states of the named alarms only (resource types as the Service Authorization
 * Reference lists them: EnterStandby/ExitStandby on autoScalingGroup, DeregisterTargets/
 * RegisterTargets on targetgroup, DescribeAlarms on alarm). DescribeTargetGroupAttributes and
 * DescribeTargetHealth take no resource-level permissions. Undefined when a release touches
 * no load balancer and no alarm.
 */
export function trafficReleasePolicy(s: TrafficScope): PolicyDocument | undefined {
  const statements: PolicyStatement[] = [];
  if (s.autoScalingGroupName) {
    statements.push({
      Sid: "StandbyInOwnGroup",
      Effect: "Allow",
      Action: ["autoscaling:EnterStandby", "autoscaling:ExitStandby"],
      Resource: autoScalingGroupArn(s.partition, s.region, s.accountId, s.autoScalingGroupName),
    });
  }
  if (s.targetGroupArns.length > 0) {
    statements.push({
      Sid: "DeregisterAndRegisterOwnTargets",
      Effect: "Allow",
      Action: ["elasticloadbalancing:DeregisterTargets", "elasticloadbalancing:RegisterTargets"],
      Resource: [...s.targetGroupArns],
    });
  }
  if (s.autoScalingGroupName || s.targetGroupArns.length > 0) {
    statements.push({ Sid: "ReadDeregistrationDelay", Effect: "Allow", Action: "elasticloadbalancing:DescribeTargetGroupAttributes", Resource: "*" });
  }
  if (s.alarmNames.length > 0) {
    statements.push({
      Sid: "ReadAlarmGates",
      Effect: "Allow",
      Action: "cloudwatch:DescribeAlarms",
      Resource: s.alarmNames.map((n) => alarmArn(s.partition, s.region, s.accountId, n)),
    });
  }
  return statements.length > 0 ? policyDocument(statements) : undefined;
}

/**
 * The preview role: what a pull request's `zcp preview` and foundation `pulumi preview` read,
 * and nothing they could change: no state write, not even a lock (a preview takes none).
 */
export function previewRolePolicy(s: RoleScope): PolicyDocument {
  const { partition: p, region, accountId } = s;
  const prefix = artifactPrefix(s.app);
  return policyDocument([
    listBucket("ArtifactsList", p, s.bucket),
    {
      Sid: "ArtifactsRead",
      Effect: "Allow",
      Action: ["s3:GetObject", "s3:GetObjectAttributes"],
      Resource: objectArn(p, s.bucket, `${prefix}/*`),
    },
    {
      Sid: "ReadDeployDocument",
      Effect: "Allow",
      Action: ["ssm:DescribeDocument", "ssm:GetDocument"],
      Resource: documentArn(p, region, accountId, s.documentName),
    },
    {
      // A foundation preview of a stack that adopts the account's provider looks it up.
      Sid: "ReadGitHubProvider",
      Effect: "Allow",
      Action: "iam:GetOpenIDConnectProvider",
      Resource: `arn:${p}:iam::${accountId}:oidc-provider/${GITHUB_OIDC_HOST}`,
    },
    {
      Sid: "Describe",
      Effect: "Allow",
      Action: [...PREVIEW_DESCRIBE_ACTIONS],
      Resource: "*",
    },
    ...stateBackendStatements(s.stateBackend, p, false),
  ]);
}

/**
 * The instance role's own statements (next to AmazonSSMManagedInstanceCore): read this app's
 * artifacts and `latest.json`, and the boot copy of the agent. It writes nothing.
 */
export function instanceRolePolicy(s: { partition: string; bucket: string; app: string }): PolicyDocument {
  return policyDocument([
    listBucket("ArtifactsList", s.partition, s.bucket),
    {
      Sid: "ReadReleases",
      Effect: "Allow",
      Action: "s3:GetObject",
      Resource: [
        objectArn(s.partition, s.bucket, `${artifactPrefix(s.app)}/*`),
        objectArn(s.partition, s.bucket, `${agentPrefix(s.app)}/*`),
      ],
    },
  ]);
}

/** The artifact bucket policy: refuse anything not over TLS 1.2 or later. */
export function tlsOnlyBucketPolicy(partition: string, bucket: string): PolicyDocument {
  const resources = [bucketArn(partition, bucket), objectArn(partition, bucket, "*")];
  return policyDocument([
    {
      Sid: "DenyInsecureTransport",
      Effect: "Deny",
      Principal: "*",
      Action: "s3:*",
      Resource: resources,
      Condition: { Bool: { "aws:SecureTransport": "false" } },
    },
    {
      Sid: "DenyOutdatedTls",
      Effect: "Deny",
      Principal: "*",
      Action: "s3:*",
      Resource: resources,
      Condition: { NumericLessThan: { "s3:TlsVersion": "1.2" } },
    },
  ]);
}
