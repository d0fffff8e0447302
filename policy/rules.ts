/**
 * zcp's CrossGuard rules as pure functions over plain resource descriptions, so they run
 * the same under the policy pack (policy/index.ts), over mocked resources in unit tests,
 * and against deliberately bad fixtures.
 *
 * Values a preview cannot know yet (a policy built from an unknown ARN) are skipped rather
 * than guessed; the rule checks them on the update, when they are known.
 */
import { GITHUB_AUD_KEY, GITHUB_OIDC_HOST, GITHUB_SUB_KEY, STS_AUDIENCE, isPullRequestSubjectPattern } from "../shared/policy.js";

export interface PolicySubject {
  urn: string;
  /** Pulumi type token, like `aws:s3/bucket:Bucket`. */
  type: string;
  name: string;
  /** The resource's inputs (resource rules) or its state (stack rules). */
  props: Record<string, unknown>;
  /** Provider id of the resource, when known. */
  id?: string | undefined;
  /** URNs of the resources it depends on. */
  dependencies?: readonly string[];
  /** Props a preview cannot know yet; they are left out of `props` and not judged. */
  unknown?: readonly string[];
}

export interface ResourceRule {
  name: string;
  description: string;
  /** Violation messages; empty when the resource complies or the rule does not apply. */
  check(resource: PolicySubject): string[];
}

export interface StackViolation {
  urn: string;
  message: string;
}

export interface StackRule {
  name: string;
  description: string;
  check(resources: readonly PolicySubject[]): StackViolation[];
}

export const T = {
  bucket: "aws:s3/bucket:Bucket",
  bucketV2: "aws:s3/bucketV2:BucketV2",
  bucketAcl: "aws:s3/bucketAcl:BucketAcl",
  publicAccessBlock: "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
  encryption: "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
  bucketPolicy: "aws:s3/bucketPolicy:BucketPolicy",
  role: "aws:iam/role:Role",
  rolePolicy: "aws:iam/rolePolicy:RolePolicy",
  rolePolicyAttachment: "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
  policy: "aws:iam/policy:Policy",
  userPolicy: "aws:iam/userPolicy:UserPolicy",
  groupPolicy: "aws:iam/groupPolicy:GroupPolicy",
  launchTemplate: "aws:ec2/launchTemplate:LaunchTemplate",
  instance: "aws:ec2/instance:Instance",
} as const;

const BUCKET_TYPES: readonly string[] = [T.bucket, T.bucketV2];
const PUBLIC_ACLS = ["public-read", "public-read-write", "authenticated-read"];
const ENCRYPTION_ALGORITHMS = ["AES256", "aws:kms", "aws:kms:dsse"];

// ---------------------------------------------------------------------------------------
// Policy documents as they appear in props
// ---------------------------------------------------------------------------------------

interface Statement {
  Sid?: unknown;
  Effect?: unknown;
  Principal?: unknown;
  Action?: unknown;
  NotAction?: unknown;
  Resource?: unknown;
  Condition?: unknown;
}

/** A policy prop (JSON text or an object) as statements; undefined when not known yet. */
export function statementsOf(policy: unknown): Statement[] | undefined {
  let doc: unknown = policy;
  if (typeof policy === "string") {
    try {
      doc = JSON.parse(policy);
    } catch {
      return undefined;
    }
  }
  if (!doc || typeof doc !== "object") return undefined;
  const s = (doc as { Statement?: unknown }).Statement;
  if (Array.isArray(s)) return s as Statement[];
  if (s && typeof s === "object") return [s as Statement];
  return undefined;
}

function list(value: unknown): string[] {
  if (typeof value === "string") return [value];
  if (Array.isArray(value)) return value.filter((v): v is string => typeof v === "string");
  return [];
}

function isAllPrincipal(principal: unknown): boolean {
  if (principal === "*") return true;
  if (principal && typeof principal === "object") return list((principal as { AWS?: unknown }).AWS).includes("*");
  return false;
}

function label(s: Statement, i: number): string {
  return typeof s.Sid === "string" && s.Sid ? `statement "${s.Sid}"` : `statement ${i + 1}`;
}

// ---------------------------------------------------------------------------------------
// Resource rules
// ---------------------------------------------------------------------------------------

export const bucketNotPublic: ResourceRule = {
  name: "zcp-bucket-not-public",
  description: "S3 buckets block every kind of public access: no public ACL, no policy that lets anyone in.",
  check(r) {
    const out: string[] = [];
    if (r.type === T.publicAccessBlock) {
      for (const flag of ["blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"]) {
        if (r.props[flag] !== true && !r.unknown?.includes(flag)) out.push(`${flag} must be true`);
      }
    }
    if ((BUCKET_TYPES.includes(r.type) || r.type === T.bucketAcl) && PUBLIC_ACLS.includes(String(r.props["acl"]))) {
      out.push(`ACL "${String(r.props["acl"])}" makes the bucket public`);
    }
    if (r.type === T.bucketPolicy) {
      (statementsOf(r.props["policy"]) ?? []).forEach((s, i) => {
        if (s.Effect === "Allow" && isAllPrincipal(s.Principal) && !s.Condition) {
          out.push(`${label(s, i)} allows any principal without a condition`);
        }
      });
    }
    return out;
  },
};

export const encryptionOn: ResourceRule = {
  name: "zcp-encryption-on",
  description: "Bucket encryption settings name a real server-side encryption algorithm.",
  check(r) {
    if (r.type !== T.encryption || r.unknown?.includes("rules")) return [];
    const rules = r.props["rules"];
    if (!Array.isArray(rules) || rules.length === 0) return ["no encryption rule"];
    const out: string[] = [];
    for (const rule of rules as { applyServerSideEncryptionByDefault?: { sseAlgorithm?: unknown } }[]) {
      const algorithm = rule?.applyServerSideEncryptionByDefault?.sseAlgorithm;
      if (typeof algorithm !== "string" || !ENCRYPTION_ALGORITHMS.includes(algorithm)) {
        out.push(`sseAlgorithm must be one of ${ENCRYPTION_ALGORITHMS.join(", ")}, got ${JSON.stringify(algorithm)}`);
      }
    }
    return out;
  },
};

function permissionPolicies(r: PolicySubject): unknown[] {
  switch (r.type) {
    case T.rolePolicy:
    case T.policy:
    case T.userPolicy:
    case T.groupPolicy:
      return [r.props["policy"]];
    case T.role: {
      const inline = r.props["inlinePolicies"];
      return Array.isArray(inline) ? inline.map((p: { policy?: unknown }) => p?.policy) : [];
    }
    default:
      return [];
  }
}

export const noAdminStar: ResourceRule = {
  name: "zcp-no-iam-star",
  description: 'No IAM policy allows action "*" on resource "*", and nothing attaches AdministratorAccess.',
  check(r) {
    const out: string[] = [];
    for (const policy of permissionPolicies(r)) {
      (statementsOf(policy) ?? []).forEach((s, i) => {
        if (s.Effect !== "Allow") return;
        const anyAction = list(s.Action).some((a) => a === "*" || a === "*:*") || s.NotAction !== undefined;
        if (anyAction && list(s.Resource).includes("*")) out.push(`${label(s, i)} allows every action on every resource`);
      });
    }
    if (r.type === T.rolePolicyAttachment && /:iam::aws:policy\/AdministratorAccess$/.test(String(r.props["policyArn"]))) {
      out.push("attaches AdministratorAccess");
    }
    return out;
  },
};

function isGitHubFederated(principal: unknown): boolean {
  if (!principal || typeof principal !== "object") return false;
  return list((principal as { Federated?: unknown }).Federated).some((f) => f.endsWith(`oidc-provider/${GITHUB_OIDC_HOST}`));
}

export const oidcTrustPinned: ResourceRule = {
  name: "zcp-oidc-trust-pinned",
  description:
    "Roles trusted by GitHub OIDC pin the audience to sts.amazonaws.com and the subject to exact values, with StringEquals only.",
  check(r) {
    if (r.type !== T.role) return [];
    const statements = statementsOf(r.props["assumeRolePolicy"]);
    if (!statements) return [];
    const out: string[] = [];
    statements.forEach((s, i) => {
      if (s.Effect !== "Allow") return;
      const where = label(s, i);
      if (isAllPrincipal(s.Principal)) {
        out.push(`${where} trusts any principal`);
        return;
      }
      if (!isGitHubFederated(s.Principal)) return;
      const actions = list(s.Action);
      if (actions.length !== 1 || actions[0] !== "sts:AssumeRoleWithWebIdentity") {
        out.push(`${where} must allow only sts:AssumeRoleWithWebIdentity, got ${JSON.stringify(s.Action)}`);
      }
      const condition = (s.Condition && typeof s.Condition === "object" ? s.Condition : {}) as Record<string, Record<string, unknown>>;
      // One exception to StringEquals: pull-request subjects under a customised subject template
      // name the merge ref's workflow, which no fixed list can hold (shared/policy.ts).
      const likeSub = list((condition["StringLike"] ?? {})[GITHUB_SUB_KEY]);
      const prPatterns = likeSub.length > 0 && likeSub.every(isPullRequestSubjectPattern) && Object.keys(condition["StringLike"] ?? {}).length === 1;
      for (const [operator, keys] of Object.entries(condition)) {
        const touched = Object.keys(keys ?? {}).filter((k) => k.startsWith(`${GITHUB_OIDC_HOST}:`));
        if (touched.length > 0 && operator !== "StringEquals" && !(operator === "StringLike" && prPatterns)) {
          out.push(`${where} uses ${operator} on ${touched.join(", ")}; only StringEquals pins a claim`);
        }
      }
      const equals = condition["StringEquals"] ?? {};
      const aud = list(equals[GITHUB_AUD_KEY]);
      if (aud.length !== 1 || aud[0] !== STS_AUDIENCE) {
        out.push(`${where} must pin ${GITHUB_AUD_KEY} to "${STS_AUDIENCE}", got ${JSON.stringify(equals[GITHUB_AUD_KEY] ?? null)}`);
      }
      const sub = list(equals[GITHUB_SUB_KEY]);
      if (sub.length === 0 && !prPatterns) out.push(`${where} must pin ${GITHUB_SUB_KEY} with StringEquals`);
      for (const value of sub) {
        if (/[*?]/.test(value) || !/^repo:[^:]+\/[^:]+:.+$/.test(value)) {
          out.push(`${where} has a subject that is not one exact repository context: ${JSON.stringify(value)}`);
        }
      }
    });
    return out;
  },
};

export const imdsV2Required: ResourceRule = {
  name: "zcp-imdsv2-required",
  description: "Launch templates and instances require IMDSv2 session tokens (httpTokens: required).",
  check(r) {
    if (r.type !== T.launchTemplate && r.type !== T.instance) return [];
    const options = (r.props["metadataOptions"] ?? {}) as { httpEndpoint?: unknown; httpTokens?: unknown; httpPutResponseHopLimit?: unknown };
    if (options.httpEndpoint === "disabled") return [];
    const out: string[] = [];
    if (options.httpTokens !== "required") out.push(`metadataOptions.httpTokens must be "required", got ${JSON.stringify(options.httpTokens ?? null)}`);
    const hops = options.httpPutResponseHopLimit;
    if (typeof hops === "number" && hops > 2) out.push(`metadataOptions.httpPutResponseHopLimit must be 1 or 2, got ${hops}`);
    return out;
  },
};

export const RESOURCE_RULES: readonly ResourceRule[] = [bucketNotPublic, encryptionOn, noAdminStar, oidcTrustPinned, imdsV2Required];

// ---------------------------------------------------------------------------------------
// Stack rules: every bucket has its settings resources
// ---------------------------------------------------------------------------------------

/** The settings resources that belong to a bucket: by `bucket` prop or by dependency. */
function companionsOf(bucket: PolicySubject, resources: readonly PolicySubject[], type: string): PolicySubject[] {
  const ids = [bucket.id, bucket.props["id"], bucket.props["bucket"]].filter((v): v is string => typeof v === "string" && v !== "");
  return resources.filter(
    (r) => r.type === type && ((typeof r.props["bucket"] === "string" && ids.includes(r.props["bucket"])) || (r.dependencies ?? []).includes(bucket.urn)),
  );
}

function eachBucket(resources: readonly PolicySubject[], problem: (bucket: PolicySubject) => string | undefined): StackViolation[] {
  const out: StackViolation[] = [];
  for (const bucket of resources.filter((r) => BUCKET_TYPES.includes(r.type))) {
    const message = problem(bucket);
    if (message) out.push({ urn: bucket.urn, message: `bucket ${bucket.name}: ${message}` });
  }
  return out;
}

export const bucketHasPublicAccessBlock: StackRule = {
  name: "zcp-bucket-not-public-stack",
  description: "Every S3 bucket has a public access block with all four settings on.",
  check(resources) {
    return eachBucket(resources, (bucket) => {
      const blocks = companionsOf(bucket, resources, T.publicAccessBlock);
      if (blocks.length === 0) return "has no BucketPublicAccessBlock";
      return blocks.some((b) => bucketNotPublic.check(b).length === 0) ? undefined : "its public access block leaves a setting off";
    });
  },
};

export const bucketHasEncryption: StackRule = {
  name: "zcp-encryption-on-stack",
  description: "Every S3 bucket has a server-side encryption configuration.",
  check(resources) {
    return eachBucket(resources, (bucket) => {
      const configs = companionsOf(bucket, resources, T.encryption);
      if (configs.length === 0) return "has no BucketServerSideEncryptionConfiguration";
      return configs.some((c) => encryptionOn.check(c).length === 0) ? undefined : "its encryption configuration is invalid";
    });
  },
};

/** Does the policy deny every S3 request that is not over TLS? */
export function deniesInsecureTransport(policy: unknown): boolean | undefined {
  const statements = statementsOf(policy);
  if (!statements) return undefined;
  return statements.some((s) => {
    if (s.Effect !== "Deny" || !isAllPrincipal(s.Principal)) return false;
    if (!list(s.Action).some((a) => a === "s3:*" || a === "*")) return false;
    const bool = (s.Condition as { Bool?: Record<string, unknown> } | undefined)?.Bool ?? {};
    return list(bool["aws:SecureTransport"]).includes("false");
  });
}

export const bucketTlsOnly: StackRule = {
  name: "zcp-bucket-tls-only",
  description: "Every S3 bucket's policy denies requests that do not use TLS (aws:SecureTransport false).",
  check(resources) {
    return eachBucket(resources, (bucket) => {
      const policies = companionsOf(bucket, resources, T.bucketPolicy);
      if (policies.length === 0) return "has no bucket policy denying insecure transport";
      const verdicts = policies.map((p) => deniesInsecureTransport(p.props["policy"]));
      if (verdicts.includes(true) || verdicts.includes(undefined)) return undefined;
      return "its policy does not deny insecure transport (Deny s3:* when aws:SecureTransport is false)";
    });
  },
};

export const STACK_RULES: readonly StackRule[] = [bucketHasPublicAccessBlock, bucketHasEncryption, bucketTlsOnly];

export interface Violation {
  rule: string;
  urn: string;
  message: string;
}

/** Runs every rule over a set of resources. */
export function evaluateAll(resources: readonly PolicySubject[]): Violation[] {
  const out: Violation[] = [];
  for (const r of resources) {
    for (const rule of RESOURCE_RULES) {
      for (const message of rule.check(r)) out.push({ rule: rule.name, urn: r.urn, message });
    }
  }
  for (const rule of STACK_RULES) {
    for (const v of rule.check(resources)) out.push({ rule: rule.name, ...v });
  }
  return out;
}
