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
 * A `job_workflow_ref` a role may require: `OWNER/REPO/.github/workflows/FILE.yml@REF`, REF a
 * branch (`refs/heads/main`), a tag or a full commit SHA. No wildcard, no colon (GitHub would
 * write it as %3A), nothing that could end the subject's last field early.
 */
export const JOB_WORKFLOW_REF_RE =
  /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})\/[A-Za-z0-9._-]{1,100}\/\.github\/workflows\/[A-Za-z0-9._-]{1,200}\.ya?ml@(?:refs\/(?:heads|tags)\/[A-Za-z0-9._/-]{1,200}|[0-9a-f]{40})$/;

function checkSubjectParts(parts: readonly (string | undefined)[]): void {
  for (const part of parts) {
    // Config validation already rejects these; this guard keeps the builder safe on its own.
    if (part !== undefined && (part === "" || UNSAFE_SUBJECT_PART.test(part))) {
      throw new Error(`unsafe value in a GitHub subject: ${JSON.stringify(part)}`);
    }
  }
}

/** `repo:OWNER/REPO` and, when both ids are known, the immutable `repo:OWNER@OWNER_ID/REPO@REPO_ID`. */
function repoClaims(repository: GitHubRepository): string[] {
  const claims = [`repo:${repository.owner}/${repository.repo}`];
  if (repository.ownerId !== undefined && repository.repoId !== undefined) {
    claims.push(`repo:${repository.owner}@${repository.ownerId}/${repository.repo}@${repository.repoId}`);
  }
  return claims;
}

/**
 * The exact `sub` claims a role accepts: the name form `repo:OWNER/REPO:…` and, when both
 * ids are known, the immutable id form `repo:OWNER@OWNER_ID/REPO@REPO_ID:…` that
 * repositories created from July 2026 emit (and that survives a rename). With a customised
 * template (`jobWorkflowRef`), each ends in `:job_workflow_ref:REF`; GitHub keeps the ids in
 * the repo field of a customised immutable subject too.
 */
export function githubSubjects(repository: GitHubRepository, context: GitHubSubjectContext, jobWorkflowRef?: string): string[] {
  const parts = [repository.owner, repository.repo, repository.ownerId, repository.repoId];
  if (typeof context !== "string") parts.push(context.environment);
  checkSubjectParts(parts);
  if (jobWorkflowRef !== undefined && !JOB_WORKFLOW_REF_RE.test(jobWorkflowRef)) {
    throw new Error(`unsafe job_workflow_ref in a GitHub subject: ${JSON.stringify(jobWorkflowRef)}`);
  }
  const suffix = context === "pull_request" ? "pull_request" : `environment:${context.environment}`;
  const tail = jobWorkflowRef !== undefined ? `:job_workflow_ref:${jobWorkflowRef}` : "";
  return repoClaims(repository).map((repo) => `${repo}:${suffix}${tail}`);
}

/**
 * Subject patterns for pull-request jobs when the repository's template is customised: the
 * job's workflow ref then names the pull request's merge ref (`refs/pull/N/merge`), which
 * no fixed value can list. The pattern admits exactly what the default subject
 * `repo:OWNER/REPO:CONTEXT` admitted, any workflow of this repository run for a pull request:
 * the repository and context are fixed before the first wildcard (`web-evil` or another
 * context cannot match), and a wildcard never reaches past `@refs/pull/`.
 */
export function githubPullRequestSubjectPatterns(repository: GitHubRepository, context: GitHubSubjectContext): string[] {
  const parts = [repository.owner, repository.repo, repository.ownerId, repository.repoId];
  if (typeof context !== "string") parts.push(context.environment);
  checkSubjectParts(parts);
  const suffix = context === "pull_request" ? "pull_request" : `environment:${context.environment}`;
  return repoClaims(repository).map(
    (repo) => `${repo}:${suffix}:job_workflow_ref:${repository.owner}/${repository.repo}/.github/workflows/*@refs/pull/*/merge`,
  );
}

/**
 * Whether `value` is exactly a pattern `githubPullRequestSubjectPatterns` builds: a fixed
 * repository (name or id form) and pull-request context, any workflow of that same
 * repository, at a pull request's merge ref. Lets the policy pack accept these `StringLike`
 * subjects and nothing looser.
 */
export function isPullRequestSubjectPattern(value: string): boolean {
  const m = /^repo:([^:*?@/\s]+)(?:@[0-9]+)?\/([^:*?@/\s]+)(?:@[0-9]+)?:(?:pull_request|environment:[^:*?/@\s]+):job_workflow_ref:([^:*?/\s]+)\/([^:*?/\s]+)\/\.github\/workflows\/\*@refs\/pull\/\*\/merge$/.exec(value);
  return m !== null && m[1] === m[3] && m[2] === m[4];
}

/** The subjects a trust policy accepts: exact values, and (pull requests under a customised template only) patterns. */
export interface GitHubTrustSubjects {
  exact: readonly string[];
  patterns?: readonly string[];
}

/**
 * A role trust policy for GitHub Actions: the account's GitHub OIDC provider, audience
 * pinned to `sts.amazonaws.com`, subject pinned to exact values with `StringEquals` (so
 * `OWNER/REPO-evil` or another branch can never match). `StringLike` appears only for the
 * pull-request patterns above, in a statement of its own.
 */
export function githubTrustPolicy(providerArn: string, subjects: readonly string[] | GitHubTrustSubjects): PolicyDocument {
  const { exact, patterns = [] } = Array.isArray(subjects) ? { exact: subjects as readonly string[] } : (subjects as GitHubTrustSubjects);
  if (exact.length === 0 && patterns.length === 0) throw new Error("a GitHub trust policy needs at least one subject");
  const one = (list: readonly string[]) => (list.length === 1 ? list[0]! : [...list]);
  const assume = (Sid: string, Condition: ConditionBlock): PolicyStatement => ({
    Sid,
    Effect: "Allow",
    Principal: { Federated: providerArn },
    Action: "sts:AssumeRoleWithWebIdentity",
    Condition,
  });
  const statements: PolicyStatement[] = [];
  if (exact.length > 0) {
    statements.push(assume("GitHubActions", { StringEquals: { [GITHUB_AUD_KEY]: STS_AUDIENCE, [GITHUB_SUB_KEY]: one(exact) } }));
  }
  if (patterns.length > 0) {
    statements.push(assume("GitHubPullRequests", { StringEquals: { [GITHUB_AUD_KEY]: STS_AUDIENCE }, StringLike: { [GITHUB_SUB_KEY]: one(patterns) } }));
  }
  return policyDocument(statements);
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

/**
 * An IAM role ARN (an optional path, then the name), as IAM spells role names; never `*` or
 * `?`, which would widen a grant to other roles.
 */
export const ROLE_ARN_RE = /^arn:(aws|aws-cn|aws-us-gov):iam::([0-9]{12}):role\/([A-Za-z0-9+=,.@_-]+\/)*[A-Za-z0-9+=,.@_-]{1,64}$/;

/**
 * The release artifacts of an app (`releases/<app>/<version>.tar.gz`), without `latest.json`:
 * what `zcp promote` reads from another environment's bucket. Versions contain no `/`.
 */
export function releaseArtifactsPattern(app: string): string {
  return `${artifactPrefix(app)}/*.tar.gz`;
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

/** `name` starts with a slash (`/zcp/app/env/image-id`), which the ARN keeps after `parameter`. */
export function ssmParameterArn(partition: string, region: string, accountId: string, name: string): string {
  return `arn:${partition}:ssm:${region}:${accountId}:parameter${name.startsWith("/") ? name : `/${name}`}`;
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
  /** Another environment's artifact bucket that `zcp promote` reads from. @default none */
  promoteFrom?: PromoteSource | undefined;
}

/** Where promoted artifacts come from: the source environment's bucket and its account. */
export interface PromoteSource {
  bucket: string;
  /** The account that owns the bucket (bucket ARNs carry none). */
  accountId: string;
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
  // The release role encrypts and decrypts the release stack's secrets. A preview role gets no
  // KMS right at all, not even DescribeKey: previews run on a throwaway copy of the state, read
  // with `pulumi stack export` (no --show-secrets), which decrypts nothing, and encrypted with a
  // passphrase of its own (deploy/state-copy.ts), so they make no KMS call. Loading the real
  // state would decrypt its data key at once (pulumi/pulumi pkg/secrets/cloud/manager.go).
  if (scope.kmsKeyArn && write) {
    statements.push({
      Sid: "StateSecrets",
      Effect: "Allow",
      Action: ["kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GenerateDataKey"],
      Resource: scope.kmsKeyArn,
    });
  }
  return statements;
}

/**
 * The release role: uploads artifacts and moves `latest.json` in its own prefix, sends only
 * the zcp deploy document and only to instances tagged with its app and environment, bakes
 * images only from those instances (tagged with its app at creation), and retires only
 * images and snapshots tagged with its app. The image parameter's rights are granted
 * separately by the fleet that owns it (`imageParameterReleasePolicy`); it holds no
 * launch-template write at all.
 */
export function releaseRolePolicy(s: RoleScope): PolicyDocument {
  const { partition: p, region, accountId } = s;
  const prefix = artifactPrefix(s.app);
  const ownTags = { [TAG_APP]: s.app, [TAG_ENV]: s.environment };
  return policyDocument([
    listBucket("ArtifactsList", p, s.bucket),
    {
      // Includes `latest.json` (read, then compare-and-swap write). The tagging actions keep
      // the current and previous artifacts out of the lifecycle's expiry (`zcp:retention`);
      // PutObject with a tag set needs s3:PutObjectTagging too.
      Sid: "ArtifactsReadWrite",
      Effect: "Allow",
      Action: ["s3:AbortMultipartUpload", "s3:GetObject", "s3:GetObjectAttributes", "s3:GetObjectTagging", "s3:PutObject", "s3:PutObjectTagging"],
      Resource: objectArn(p, s.bucket, `${prefix}/*`),
    },
    ...promoteFromStatements(s),
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

/**
 * `zcp promote` run with this role reads another environment's artifacts (HeadObject and
 * GetObject both authorize as s3:GetObject). A cross-account read needs this identity grant
 * and the source bucket's policy (`artifactBucketPolicy`'s `promoteReaders`). The account
 * condition pins the bucket to its owner: a bucket of that name in any other account (after
 * the original was deleted) is not readable through this grant.
 */
function promoteFromStatements(s: RoleScope): PolicyStatement[] {
  if (!s.promoteFrom) return [];
  return [
    {
      Sid: "PromoteFromRead",
      Effect: "Allow",
      Action: "s3:GetObject",
      Resource: objectArn(s.partition, s.promoteFrom.bucket, releaseArtifactsPattern(s.app)),
      Condition: { StringEquals: { "s3:ResourceAccount": s.promoteFrom.accountId } },
    },
  ];
}

/**
 * What the release role may do to move the fleet's image: write, read and read the history
 * of the one SSM parameter the launch template's image resolves from (`resolve:ssm:`), and
 * nothing on the launch template. A launch-template write would let the role choose the
 * instance profile, user data or metadata options of every instance the group launches
 * later (IAM checks `iam:PassRole` when an instance launches, not when a template version is
 * created); a parameter of data type `aws:ec2:image` only ever holds an AMI id.
 */
export function imageParameterReleasePolicy(s: ImageParameterScope): PolicyDocument {
  return imageParameterPolicy(s, "ReleaseImageParameter", ["ssm:PutParameter", "ssm:GetParameter", "ssm:GetParameterHistory"]);
}

/** What a preview reads of the image parameter: its current value, which AMI new instances boot. */
export function imageParameterPreviewPolicy(s: ImageParameterScope): PolicyDocument {
  return imageParameterPolicy(s, "ReadImageParameter", ["ssm:GetParameter"]);
}

/** The image parameter of one fleet, named by its ARN parts. */
export interface ImageParameterScope {
  partition: string;
  region: string;
  accountId: string;
  parameterName: string;
}

function imageParameterPolicy(s: ImageParameterScope, Sid: string, Action: string[]): PolicyDocument {
  return policyDocument([{ Sid, Effect: "Allow", Action, Resource: ssmParameterArn(s.partition, s.region, s.accountId, s.parameterName) }]);
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

/**
 * The artifact bucket's policy: TLS 1.2+ only, and, for `zcp promote`, read access to the
 * app's release artifacts for the named roles of other accounts (prod's release role). The
 * principal is each role's account, narrowed to the exact roles by `aws:PrincipalArn`: S3
 * refuses a policy naming a role that does not exist yet (prod may be set up after dev), and a
 * role recreated under the same name is still the one meant. No list, no write, no
 * `latest.json`, nothing outside the app's artifacts.
 */
export function artifactBucketPolicy(s: { partition: string; bucket: string; app: string; promoteReaders?: readonly string[] }): PolicyDocument {
  const readers = [...new Set(s.promoteReaders ?? [])];
  const statements = [...tlsOnlyBucketPolicy(s.partition, s.bucket).Statement];
  if (readers.length > 0) {
    const accounts = [
      ...new Set(
        readers.map((arn) => {
          const account = ROLE_ARN_RE.exec(arn)?.[2];
          if (!account) throw new Error(`promote reader must be an IAM role ARN without wildcards, got ${JSON.stringify(arn)}`);
          return `arn:${s.partition}:iam::${account}:root`;
        }),
      ),
    ];
    statements.push({
      Sid: "PromoteReaders",
      Effect: "Allow",
      Principal: { AWS: accounts.length === 1 ? accounts[0]! : accounts },
      Action: "s3:GetObject",
      Resource: objectArn(s.partition, s.bucket, releaseArtifactsPattern(s.app)),
      Condition: { ArnEquals: { "aws:PrincipalArn": readers.length === 1 ? readers[0]! : readers } },
    });
  }
  return policyDocument(statements);
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
