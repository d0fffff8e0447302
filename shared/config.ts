/**
 * zcp's configuration: one schema for the foundation program and the release runner.
 *
 * Stack config lives under the `zcp` namespace (`Pulumi.<stack>.yaml`), one key per section:
 * `zcp:app`, `zcp:environment`, `zcp:github`, `zcp:aws`, `zcp:artifacts`, `zcp:oidc`,
 * `zcp:fleet`, `zcp:baseAmiId`, `zcp:runtime`, `zcp:deploy`, `zcp:traffic`, `zcp:image`, `zcp:stateBackend`.
 * Every problem is reported with the field it concerns:
 * `zcp:deploy.batch: must be 1..100% or a count, got "0%"`.
 *
 * `loadConfig()` is the only place that reads Pulumi config; everything else receives the
 * parsed, plain `ZcpConfig`.
 */
import * as pulumi from "@pulumi/pulumi";
import { z } from "zod";
import { APP_DIR_PATTERN, APP_USER_PATTERN, HEALTH_URL_PATTERN, SERVICE_PATTERN } from "./agent/document.js";
import { ConfigError } from "./errors.js";
import { APP_PATTERN, ENV_PATTERN } from "./naming.js";
import { JOB_WORKFLOW_REF_RE, ROLE_ARN_RE, partitionOf } from "./policy.js";
import { BATCH_RE, RULES, matching, required, show, wholeNumber } from "./rules.js";

export const CONFIG_NAMESPACE = "zcp";

export interface AwsConfig {
  /** The AWS account this environment lives in (12 digits); every other account is refused. */
  accountId: string;
  /** AWS region, like `eu-west-1`. */
  region: string;
  /** Accounts this stack must never touch, e.g. dev's account in the prod stack. @default [] */
  forbiddenAccountIds: string[];
}


// The github, oidc, fleet and traffic sections are validated inline in the schema below;
// their parsed types are derived from it, so a rule and the type it produces cannot drift.

/** The keys `K` of `T` made required and defined: the defaults `normalize` fills in. */
type Defaulted<T, K extends keyof T> = Omit<T, K> & { [P in K]-?: Exclude<T[P], undefined> };

/**
 * The repository whose workflows may assume the roles: `owner` and `repo` exactly as GitHub
 * spells them; `ownerId` and `repoId` (set both or neither) add the immutable id-form subject;
 * `environment`, the GitHub environment whose jobs may assume the release role, defaults to
 * the zcp environment name.
 */
export type GitHubConfig = Defaulted<RawParsed["github"], "environment">;

/** The account's GitHub OIDC provider: created here, or adopted; never both. */
export type OidcConfig = { mode: "create" } | { mode: "existing"; existingProviderArn: NonNullable<RawParsed["oidc"]["existingProviderArn"]> };

type FleetSection = RawParsed["fleet"];
/** A target group zcp creates for a created fleet. */
export type TargetGroupConfig = Defaulted<NonNullable<FleetSection["targetGroup"]>, "healthCheckPath">;
type CreatedFleetKeys = "minSize" | "maxSize" | "desiredCapacity" | "subnetIds" | "instanceType" | "securityGroupIds";
/** An Auto Scaling Group the foundation creates. */
export type FleetCreateConfig = { mode: "create"; targetGroup?: TargetGroupConfig } & Defaulted<Pick<FleetSection, CreatedFleetKeys>, CreatedFleetKeys>;
/** An Auto Scaling Group that exists already; zcp reads it and never changes it. */
export type FleetExistingConfig = { mode: "existing" } & Pick<FleetSection, "instanceType"> &
  Defaulted<Pick<FleetSection, "asgName" | "securityGroupIds">, "asgName" | "securityGroupIds">;
export type FleetConfig = FleetCreateConfig | FleetExistingConfig;

/** How a release takes batches out of the load balancer and back. */
export type TrafficConfig = RawParsed["traffic"];
export type TrafficControl = TrafficConfig["control"];

export interface StateBackendConfig {
  /** S3 bucket of the Pulumi state (`s3://bucket/keyPrefix`). */
  bucket: string;
  /** Key prefix inside the bucket, without leading or trailing slash. @default the whole bucket */
  keyPrefix?: string;
  /** KMS key ARN of the `awskms://` secrets provider. @default none */
  kmsKeyArn?: string;
}

export interface ZcpConfig {
  /** Application name: lower-case letters, digits and hyphens, 2..32 characters. */
  app: string;
  /** Environment name (`dev`, `prod`, …); must equal the stack name for stacks `dev` and `prod`. */
  environment: string;
  github: GitHubConfig;
  aws: AwsConfig;
  artifacts: ArtifactsConfig;
  /** @default { mode: "create" } */
  oidc: OidcConfig;
  fleet: FleetConfig;
  /** AMI instances boot from before the first baked image. */
  baseAmiId: string;
  runtime: RuntimeConfig;
  deploy: DeployConfig;
  traffic: TrafficConfig;
  image: ImageConfig;
  /** The release stack's state backend, when the release role must reach it. @default none */
  stateBackend?: StateBackendConfig;
}

/** The stack-config keys (under `zcp:`) that hold objects; `app`, `environment` and `baseAmiId` are strings. */
export const OBJECT_KEYS = ["github", "aws", "artifacts", "oidc", "fleet", "runtime", "deploy", "traffic", "image", "stateBackend"] as const;

/** Stacks whose name is the environment name they must configure. */
export const ENVIRONMENT_STACKS = ["dev", "prod"] as const;

// ---------------------------------------------------------------------------------------
// Schema
// ---------------------------------------------------------------------------------------

const ACCOUNT_ID_RE = /^[0-9]{12}$/;
const REGION_RE = /^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-[0-9]{1,2}$/;
const AMI_RE = /^ami-([0-9a-f]{8}|[0-9a-f]{17})$/;
const SUBNET_RE = /^subnet-([0-9a-f]{8}|[0-9a-f]{17})$/;
const SECURITY_GROUP_RE = /^sg-([0-9a-f]{8}|[0-9a-f]{17})$/;
const VPC_RE = /^vpc-([0-9a-f]{8}|[0-9a-f]{17})$/;
const INSTANCE_TYPE_RE = /^[a-z][a-z0-9-]*\.[a-z0-9-]+$/;
const ASG_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$/;
/** GitHub logins: letters, digits and single inner hyphens, up to 39 characters. */
const GITHUB_OWNER_RE = /^[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}$/;
const GITHUB_REPO_RE = /^[A-Za-z0-9._-]{1,100}$/;
const GITHUB_ID_RE = /^[1-9][0-9]{0,19}$/;
/** GitHub environment names as zcp accepts them (no characters that could widen a subject). */
const GITHUB_ENVIRONMENT_RE = /^[A-Za-z0-9._-]{1,255}$/;
const OIDC_PROVIDER_ARN_RE = /^arn:(aws|aws-cn|aws-us-gov):iam::([0-9]{12}):oidc-provider\/token\.actions\.githubusercontent\.com$/;
const BUCKET_RE = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;
const KEY_PREFIX_RE = /^[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)*$/;
const KMS_KEY_ARN_RE = /^arn:(aws|aws-cn|aws-us-gov):kms:[a-z0-9-]+:[0-9]{12}:key\/[A-Za-z0-9-]+$/;
const TARGET_GROUP_ARN_RE = /^arn:(aws|aws-cn|aws-us-gov):elasticloadbalancing:[a-z0-9-]+:[0-9]{12}:targetgroup\/[A-Za-z0-9-]{1,32}\/[0-9a-f]{16}$/;
/**
 * CloudWatch alarm names (1..255 characters, API reference PutMetricAlarm) as zcp accepts
 * them: no control characters, and no `*` or `?`, which would widen the alarm ARNs in the
 * release role's policy.
 */
const ALARM_NAME_RE = /^[^\p{Cc}*?]{1,255}$/u;


function flag() {
  return z.preprocess(
    (v) => (v === "true" ? true : v === "false" ? false : v),
    z.boolean({ error: (iss) => `must be true or false, got ${show(iss.input)}` }),
  );
}

/** Numeric ids may arrive as YAML numbers; they are kept as strings. */
function numericId(what: string) {
  return z.preprocess((v) => (typeof v === "number" && Number.isSafeInteger(v) ? String(v) : v), matching(GITHUB_ID_RE, what));
}

const healthUrl = z
  .string({ error: required("an http(s) URL") })
  .refine((v) => isHttpUrl(v) && new RegExp(HEALTH_URL_PATTERN).test(v), {
    error: (iss) => `must be an http(s) URL without credentials, spaces or quotes, got ${show(iss.input)}`,
  });

/** Directories the agent refuses to deploy into (it would own and replace them). */
const SYSTEM_DIRECTORIES = ["/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib32", "/lib64", "/opt", "/proc", "/root", "/run", "/sbin", "/srv", "/sys", "/tmp", "/usr", "/var", "/var/lib", "/var/log"];

const appDir = matching(APP_DIR_PATTERN, "an absolute path of letters, digits and ._-/")
  .refine((v) => !v.split("/").includes("..") && !v.includes("//") && !v.endsWith("/") && !v.split("/").includes("."), {
    error: (iss) => `must be a normalized absolute path (no "..", ".", "//" or trailing "/"), got ${show(iss.input)}`,
  })
  .refine((v) => !SYSTEM_DIRECTORIES.includes(v) && !v.startsWith("/usr/"), {
    error: (iss) => `must be a directory of the app's own, not a system directory, got ${show(iss.input)}`,
  });

/** Users that can become root on common images; the app must not run as one of them. */
const PRIVILEGED_USERS = ["root", "ubuntu", "ec2-user", "admin", "debian", "centos", "fedora", "rocky", "almalinux"];

// The sections whose parsed shape is what the runner and the foundation use: their types
// are derived from the schema, so a rule and the type it produces cannot drift apart.

const artifactsSection = z
  .strictObject(
    {
      /** Days an artifact is kept; 0 keeps artifacts forever. `latest.json` never expires. @default 365 */
      retainDays: wholeNumber(0, 36500).default(365),
      /** Days an overwritten or deleted object version is kept. @default 30 */
      noncurrentRetainDays: wholeNumber(1, 3650).default(30),
      /**
       * Release roles of other environments (prod's, in dev) that may read this app's release
       * artifacts from this bucket, for `zcp promote`: role ARNs; read only, no list. @default []
       */
      promoteReaders: z
        .array(matching(ROLE_ARN_RE, "an IAM role ARN like arn:aws:iam::222222222222:role/zcp-web-prod-release (no wildcards)"), {
          error: required("a list of role ARNs"),
        })
        .max(20)
        .default([]),
      /**
       * The artifact bucket `zcp promote` copies from (dev's, in prod) and the account that owns
       * it: the release role may read that bucket's release artifacts. @default none
       */
      promoteFrom: z
        .strictObject(
          {
            bucket: matching(BUCKET_RE, "an S3 bucket name"),
            accountId: matching(ACCOUNT_ID_RE, "a quoted 12-digit account id"),
          },
          { error: required("an object with bucket and accountId") },
        )
        .optional(),
    },
    { error: required("an object") },
  )
  .prefault({});
/** The artifact bucket's lifecycle. */
export type ArtifactsConfig = z.output<typeof artifactsSection>;

const runtimeSection = z.strictObject(
  {
    /**
     * User the application runs as: a dedicated unprivileged system user, which the launch
     * template's user data creates when missing. Never root or a distribution's login user
     * (ubuntu, ec2-user, …), who can become root. @default the app name
     */
    user: matching(APP_USER_PATTERN, "a user name of lower-case letters, digits, _ or -")
      .refine((v) => !PRIVILEGED_USERS.includes(v), {
        error: (iss) => `must be a dedicated unprivileged user (zcp's user data creates it), not ${show(iss.input)}, which can become root`,
      })
      .optional(),
    /** Absolute application directory (`releases/`, `current`, `shared/`). @default appRoot */
    appDir: appDir.optional(),
    /**
     * The directory the agent deploys into: appDir must be it or inside it, and the agent
     * refuses any other. @default appDir when set, else "/opt/<app>"
     */
    appRoot: appDir.optional(),
    /** @default "supervisor" */
    processManager: z
      .enum(["supervisor", "systemd"], { error: (iss) => `must be "supervisor" or "systemd", got ${show(iss.input)}` })
      .default("supervisor"),
    /** Service (supervisor program or systemd unit) to restart. @default the app name */
    service: matching(SERVICE_PATTERN, "a service name of letters, digits and _.@:-").optional(),
    /** http(s) URL on the instance that answers 2xx when the release is healthy. Required. */
    healthUrl,
    /** Seconds to wait for the health check after a restart. @default 60 */
    healthTimeoutS: wholeNumber(1, 3600).default(60),
  },
  { error: required("an object with at least healthUrl") },
);
/** How the app runs on an instance; `user`, `appDir`, `appRoot` and `service` get their defaults in `parseConfig`. */
export type RuntimeConfig = { [K in keyof z.output<typeof runtimeSection>]-?: Exclude<z.output<typeof runtimeSection>[K], undefined> };
export type ProcessManager = RuntimeConfig["processManager"];

const deploySection = z
  .strictObject(
    {
      /** Instances that get a release first; 0 skips the canary. @default 1 */
      canary: RULES.canary.default(1),
      /** Batch after the canary: a count (`"2"`) or a percentage of the fleet (`"25%"`). @default "25%" */
      batch: RULES.batch.default("25%"),
      /** Seconds to watch the canary before rolling on. @default 60 */
      soakSeconds: wholeNumber(0, 3600).default(60),
      /** Failed instances tolerated before the release stops and rolls back. @default 0 */
      maxErrors: wholeNumber(0, 1000).default(0),
      /** Older releases kept on each instance besides the current and the previous one. @default 3 */
      keepReleases: wholeNumber(1, 50).default(3),
      /** Seconds one instance's deploy may take. @default 600 */
      commandTimeoutS: wholeNumber(30, 7200).default(600),
      /**
       * Seconds SSM may take to deliver a command to an instance (SendCommand `TimeoutSeconds`);
       * an instance not reached by then ends "Delivery Timed Out", nothing run. @default 600
       */
      deliveryTimeoutS: wholeNumber(30, 7200).default(600),
      /**
       * CloudWatch alarms checked during the canary soak and after each batch; one in ALARM (or
       * missing) stops the release and rolls it back. @default []
       */
      alarms: z
        .array(matching(ALARM_NAME_RE, "a CloudWatch alarm name (no control characters, * or ?)"), { error: required("a list of alarm names") })
        .max(100)
        .default([]),
    },
    { error: required("an object") },
  )
  .prefault({});
/** How a release rolls through the fleet. */
export type DeployConfig = z.output<typeof deploySection>;

const imageSection = z
  .strictObject(
    {
      /** Bake an image after each release and write it into the image parameter the launch template resolves. @default true */
      enabled: flag().default(true),
      /** Do not reboot the instance while imaging (no downtime; file systems are not frozen). @default true */
      noReboot: flag().default(true),
      /**
       * Baked images kept per app, and image-parameter versions whose images are kept (images
       * still in use are never removed). @default 3
       */
      retain: wholeNumber(1, 100).default(3),
      /** Minutes to wait for an image to become available. @default 60 */
      waitTimeoutMinutes: wholeNumber(5, 480).default(60),
      /**
       * When the image starts baking from the canary (with noReboot): `canary`, as soon as the
       * canary is healthy, so the bake runs alongside the soak; `soak`, once the canary has
       * passed its soak. Either way the image becomes the launch template's default only after
       * every batch is healthy, and a failed soak or batch retires it (`canary` then costs one
       * retired image; on success it costs nothing). @default "canary"
       */
      bakeStart: z
        .enum(["canary", "soak"], { error: (iss) => `must be "canary" or "soak", got ${show(iss.input)}` })
        .default("canary"),
    },
    { error: required("an object") },
  )
  .prefault({});
/** Image baking after a release. */
export type ImageConfig = z.output<typeof imageSection>;
/** When the release image starts baking from the canary. */
export type ImageBakeStart = ImageConfig["bakeStart"];

const rawSchema = z.strictObject({
  app: matching(APP_PATTERN, "2..32 lower-case letters, digits or hyphens starting with a letter"),
  environment: matching(ENV_PATTERN, "a lower-case name like dev or prod"),
  github: z.strictObject(
    {
      owner: matching(GITHUB_OWNER_RE, "a GitHub user or organization name"),
      repo: matching(GITHUB_REPO_RE, "a GitHub repository name").refine((v) => v !== "." && v !== "..", {
        error: "must be a GitHub repository name",
      }),
      ownerId: numericId("a numeric GitHub owner id").optional(),
      repoId: numericId("a numeric GitHub repository id").optional(),
      environment: matching(GITHUB_ENVIRONMENT_RE, "a GitHub environment name (letters, digits, ._-)").optional(),
      // One number for both ends of a CI session: the release role's MaxSessionDuration and the
      // workflows' role-duration-seconds (IAM accepts 3600..43200 for MaxSessionDuration). The
      // default, 4 hours, fits the planned worst case of a release with the default timeouts and
      // an image bake on a fleet of up to about 20 instances without a load balancer; the runner
      // refuses a release that does not fit (deploy/session-budget.ts).
      sessionDurationS: wholeNumber(3600, 43200).default(14400),
      previewEnvironment: matching(GITHUB_ENVIRONMENT_RE, "a GitHub environment name (letters, digits, ._-)").optional(),
      releaseWorkflowRef: matching(JOB_WORKFLOW_REF_RE, "OWNER/REPO/.github/workflows/FILE.yml@refs/heads/BRANCH (or a tag or full commit SHA)").optional(),
    },
    { error: required("an object with owner and repo") },
  ),
  aws: z.strictObject(
    {
      accountId: z.string({ error: required("a quoted 12-digit account id") }).regex(ACCOUNT_ID_RE, {
        error: (iss) => `must be a 12-digit account id, got ${show(iss.input)}`,
      }),
      region: matching(REGION_RE, "an AWS region like eu-west-1"),
      forbiddenAccountIds: z
        .array(matching(ACCOUNT_ID_RE, "a quoted 12-digit account id"), { error: required("a list of account ids") })
        .default([]),
    },
    { error: required("an object with accountId and region") },
  ),
  artifacts: artifactsSection,
  oidc: z
    .strictObject(
      {
        /** Create the account's GitHub OIDC provider (the default when no provider is named). */
        create: flag().optional(),
        /** Adopt the account's existing provider instead (only one per URL per account). @default none */
        existingProviderArn: matching(OIDC_PROVIDER_ARN_RE, "the ARN of the account's token.actions.githubusercontent.com provider").optional(),
      },
      { error: required("an object") },
    )
    .prefault({}),
  fleet: z.strictObject(
    {
      /** `create` an Auto Scaling Group, or read an `existing` one. @default "existing" when asgName is set, else "create" */
      mode: z.enum(["create", "existing"], { error: (iss) => `must be "create" or "existing", got ${show(iss.input)}` }).optional(),
      /** @default 1 */
      minSize: wholeNumber(0, 1000).optional(),
      /** @default max(2, minSize) */
      maxSize: wholeNumber(1, 1000).optional(),
      /** @default minSize */
      desiredCapacity: wholeNumber(0, 1000).optional(),
      /** Subnets the created Auto Scaling Group launches into (at least one). */
      subnetIds: z.array(matching(SUBNET_RE, "a subnet id"), { error: required("a list of subnet ids") }).optional(),
      /** Instance type of the launch template. @default "t3.small" for a created group, none for an existing one */
      instanceType: matching(INSTANCE_TYPE_RE, "an EC2 instance type like t3.small").optional(),
      /** Security groups of the instances. @default [] (the VPC's default group) */
      securityGroupIds: z.array(matching(SECURITY_GROUP_RE, "a security group id"), { error: required("a list of security group ids") }).optional(),
      /** Creates a target group and registers the created group with it. @default none */
      targetGroup: z
        .strictObject(
          {
            /** VPC of the fleet's subnets. */
            vpcId: matching(VPC_RE, "a VPC id"),
            /** Port the application listens on. */
            port: wholeNumber(1, 65535),
            /** Path of the load balancer's health check. @default the path of `runtime.healthUrl` */
            healthCheckPath: matching(/^\/[A-Za-z0-9._~/?=&%+-]*$/, "a path starting with /").optional(),
          },
          { error: required("an object with vpcId and port") },
        )
        .optional(),
      /** Name of an Auto Scaling Group that already exists; zcp reads it and never changes it. */
      asgName: matching(ASG_NAME_RE, "an Auto Scaling Group name").optional(),
    },
    { error: required("an object") },
  ),
  baseAmiId: matching(AMI_RE, "an AMI id like ami-0123456789abcdef0"),
  runtime: runtimeSection,
  deploy: deploySection,
  traffic: z
    .strictObject(
      {
        /**
         * `asg-standby`: EnterStandby/ExitStandby in the fleet's Auto Scaling group (which
         * deregisters from and registers with the group's target groups); `target-group`:
         * DeregisterTargets/RegisterTargets on `targetGroupArns`; `none`: instances restart
         * while they receive traffic; `auto`: `asg-standby` when the foundation has a group,
         * else `target-group` when `targetGroupArns` is set, else `none`. @default "auto"
         */
        control: z
          .enum(["auto", "asg-standby", "target-group", "none"], {
            error: (iss) => `must be "auto", "asg-standby", "target-group" or "none", got ${show(iss.input)}`,
          })
          .default("auto"),
        /** Target groups the instances are registered with directly (not through the group). @default [] */
        targetGroupArns: z
          .array(matching(TARGET_GROUP_ARN_RE, "an ELBv2 target group ARN"), { error: required("a list of target group ARNs") })
          .max(5)
          .default([]),
        /** Share of the fleet kept healthy in service while a batch is out of traffic, 0..100. @default 50 */
        minHealthyPercent: wholeNumber(0, 100).default(50),
        /** Seconds a batch gets to become healthy in the load balancer after its deploy. @default 300 */
        healthyTimeoutS: wholeNumber(10, 3600).default(300),
      },
      { error: required("an object") },
    )
    .prefault({}),
  image: imageSection,
  stateBackend: z
    .strictObject(
      {
        bucket: matching(BUCKET_RE, "an S3 bucket name"),
        keyPrefix: matching(KEY_PREFIX_RE, "a key prefix without leading or trailing /").optional(),
        kmsKeyArn: matching(KMS_KEY_ARN_RE, "a KMS key ARN (arn:…:kms:REGION:ACCOUNT:key/ID)").optional(),
      },
      { error: required("an object with bucket") },
    )
    .optional(),
});

type RawParsed = z.output<typeof rawSchema>;

/** The schema of the `zcp:` keys, for tools that describe it (docs/configuration.md's reference). */
export const configSchema = rawSchema;

function isHttpUrl(v: string): boolean {
  try {
    const u = new URL(v);
    return (u.protocol === "http:" || u.protocol === "https:") && u.username === "" && u.password === "";
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------------------
// Problems
// ---------------------------------------------------------------------------------------

interface Problem {
  field: string;
  problem: string;
}

/** `["deploy", "batch"]` → `zcp:deploy.batch`; list items as `zcp:fleet.subnetIds[0]`. */
export function fieldName(path: readonly PropertyKey[]): string {
  let out = CONFIG_NAMESPACE;
  path.forEach((part, i) => {
    if (typeof part === "number") out += `[${part}]`;
    else out += `${i === 0 ? ":" : "."}${String(part)}`;
  });
  return out;
}

/** Messages for issues no schema worded itself. */
function genericMessage(iss: z.core.$ZodRawIssue): string {
  switch (iss.code) {
    case "invalid_type":
      if (iss.input === undefined) return "is required";
      if (iss.expected === "array") return `must be a list, got ${show(iss.input)}`;
      return `must be ${/^[aeiou]/.test(iss.expected) ? "an" : "a"} ${iss.expected}, got ${show(iss.input)}`;
    case "too_small":
      return iss.origin === "array" ? `needs at least ${String(iss.minimum)} item(s)` : `must be at least ${String(iss.minimum)}`;
    case "too_big":
      return iss.origin === "array" ? `takes at most ${String(iss.maximum)} item(s)` : `must be at most ${String(iss.maximum)}`;
    case "invalid_value":
      return `must be one of ${iss.values.map((v) => JSON.stringify(v)).join(", ")}, got ${show(iss.input)}`;
    default:
      return `is invalid (${iss.code ?? "unknown problem"})`;
  }
}

function problemsOf(issues: readonly z.core.$ZodIssue[]): Problem[] {
  const out: Problem[] = [];
  for (const iss of issues) {
    if (iss.code === "unrecognized_keys") {
      for (const key of iss.keys) out.push({ field: fieldName([...iss.path, key]), problem: "is not a zcp setting (check the spelling)" });
    } else {
      out.push({ field: fieldName(iss.path), problem: iss.message });
    }
  }
  return out;
}

/** Rules that relate fields to each other or to the stack. */
function crossFieldProblems(c: RawParsed, ctx: { stack?: string | undefined }): Problem[] {
  const out: Problem[] = [];
  const add = (path: PropertyKey[], problem: string) => out.push({ field: fieldName(path), problem });

  const stack = ctx.stack?.split("/").pop();
  if (stack && (ENVIRONMENT_STACKS as readonly string[]).includes(stack) && c.environment !== stack) {
    add(["environment"], `must be "${stack}" in stack "${stack}", got ${show(c.environment)}`);
  }
  if (c.aws.forbiddenAccountIds.includes(c.aws.accountId)) {
    add(["aws", "accountId"], `${c.aws.accountId} is listed in zcp:aws.forbiddenAccountIds; environment "${c.environment}" must not use it`);
  }
  if ((c.github.ownerId === undefined) !== (c.github.repoId === undefined)) {
    add(["github", c.github.ownerId === undefined ? "ownerId" : "repoId"], "ownerId and repoId go together: set both or neither");
  }
  if (c.github.previewEnvironment !== undefined && c.github.previewEnvironment === (c.github.environment ?? c.environment)) {
    add(["github", "previewEnvironment"], `must differ from the release role's GitHub environment ("${c.github.previewEnvironment}"): previews run pull-request code`);
  }

  if (c.oidc.create === true && c.oidc.existingProviderArn !== undefined) {
    add(["oidc"], "set either create: true or existingProviderArn, not both (an account has one GitHub provider)");
  } else if (c.oidc.create === false && c.oidc.existingProviderArn === undefined) {
    add(["oidc", "existingProviderArn"], "is required when create is false");
  } else if (c.oidc.existingProviderArn !== undefined) {
    const account = OIDC_PROVIDER_ARN_RE.exec(c.oidc.existingProviderArn)?.[2];
    if (account !== c.aws.accountId) {
      add(["oidc", "existingProviderArn"], `belongs to account ${account ?? "?"}, not to zcp:aws.accountId ${c.aws.accountId}`);
    }
  }

  const r = c.runtime;
  if (r.appDir !== undefined && r.appRoot !== undefined && r.appDir !== r.appRoot && !r.appDir.startsWith(`${r.appRoot}/`)) {
    add(["runtime", "appDir"], `must be zcp:runtime.appRoot (${r.appRoot}) or inside it, got ${JSON.stringify(r.appDir)}`);
  }
  if (r.user === undefined && PRIVILEGED_USERS.includes(c.app)) {
    add(["runtime", "user"], `defaults to the app name, which is a privileged user (${c.app}); set a dedicated user`);
  }

  const f = c.fleet;
  const mode = f.mode ?? (f.asgName !== undefined ? "existing" : "create");
  if (mode === "existing") {
    if (f.asgName === undefined) add(["fleet", "asgName"], 'is required when mode is "existing"');
    for (const key of ["minSize", "maxSize", "desiredCapacity", "subnetIds", "targetGroup"] as const) {
      if (f[key] !== undefined) add(["fleet", key], `only applies when zcp creates the fleet; an existing ASG (asgName) keeps its own`);
    }
  } else {
    if (f.asgName !== undefined) add(["fleet", "asgName"], 'only applies with mode "existing"; set either asgName or the new group\'s settings');
    if (f.subnetIds === undefined || f.subnetIds.length === 0) add(["fleet", "subnetIds"], "needs at least one subnet id");
    const min = f.minSize ?? 1;
    const max = f.maxSize ?? Math.max(2, min);
    const desired = f.desiredCapacity ?? min;
    if (min > max) add(["fleet", "minSize"], `must not exceed maxSize (${max}), got ${min}`);
    else if (desired < min || desired > max) add(["fleet", "desiredCapacity"], `must be within minSize..maxSize (${min}..${max}), got ${desired}`);
  }
  if (c.traffic.control === "target-group" && c.traffic.targetGroupArns.length === 0) {
    add(["traffic", "targetGroupArns"], 'needs at least one target group ARN when control is "target-group"');
  }
  const partition = partitionOf(c.aws.region);
  for (const [i, arn] of c.artifacts.promoteReaders.entries()) {
    if (!arn.startsWith(`arn:${partition}:`)) add(["artifacts", "promoteReaders", i], `is not in partition ${partition} of zcp:aws.region ${c.aws.region}`);
  }
  for (const [i, arn] of c.traffic.targetGroupArns.entries()) {
    const [, , , region, account] = arn.split(":");
    if (account !== c.aws.accountId) add(["traffic", "targetGroupArns", i], `belongs to account ${account ?? "?"}, not to zcp:aws.accountId ${c.aws.accountId}`);
    else if (region !== c.aws.region) add(["traffic", "targetGroupArns", i], `is in region ${region ?? "?"}, not in zcp:aws.region ${c.aws.region}`);
  }
  return out;
}

function throwProblems(problems: Problem[]): never {
  const [first, ...rest] = problems;
  const more = rest.map((p) => `\n${p.field}: ${p.problem}`).join("");
  throw new ConfigError(first!.field, `${first!.problem}${more}`);
}

// ---------------------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------------------

/**
 * Validates raw config (the `zcp:` keys without their namespace, values already decoded)
 * and fills in defaults. Throws a `ConfigError` whose `field` is the first problem's
 * `zcp:`-prefixed path; the message lists every problem, one per line.
 */
export function parseConfig(raw: unknown, ctx: { stack?: string } = {}): ZcpConfig {
  const result = rawSchema.safeParse(raw, { error: genericMessage, reportInput: true });
  if (!result.success) throwProblems(problemsOf(result.error.issues));
  const cross = crossFieldProblems(result.data, ctx);
  if (cross.length > 0) throwProblems(cross);
  return normalize(result.data);
}

function normalize(c: RawParsed): ZcpConfig {
  // Every parsed key is kept (keys added to the section flow through); optional ids only when set.
  const { ownerId, repoId, environment: githubEnvironment, ...githubRest } = c.github;
  const github: GitHubConfig = { ...githubRest, environment: githubEnvironment ?? c.environment };
  if (ownerId !== undefined) github.ownerId = ownerId;
  if (repoId !== undefined) github.repoId = repoId;

  const oidc: OidcConfig =
    c.oidc.existingProviderArn !== undefined ? { mode: "existing", existingProviderArn: c.oidc.existingProviderArn } : { mode: "create" };

  const healthPath = new URL(c.runtime.healthUrl).pathname;
  const f = c.fleet;
  let fleet: FleetConfig;
  if ((f.mode ?? (f.asgName !== undefined ? "existing" : "create")) === "existing") {
    fleet = { mode: "existing", asgName: f.asgName!, securityGroupIds: f.securityGroupIds ?? [] };
    if (f.instanceType !== undefined) fleet.instanceType = f.instanceType;
  } else {
    const minSize = f.minSize ?? 1;
    fleet = {
      mode: "create",
      minSize,
      maxSize: f.maxSize ?? Math.max(2, minSize),
      desiredCapacity: f.desiredCapacity ?? minSize,
      subnetIds: f.subnetIds ?? [],
      instanceType: f.instanceType ?? "t3.small",
      securityGroupIds: f.securityGroupIds ?? [],
    };
    if (f.targetGroup) {
      fleet.targetGroup = { vpcId: f.targetGroup.vpcId, port: f.targetGroup.port, healthCheckPath: f.targetGroup.healthCheckPath ?? healthPath };
    }
  }

  const config: ZcpConfig = {
    app: c.app,
    environment: c.environment,
    github,
    aws: { accountId: c.aws.accountId, region: c.aws.region, forbiddenAccountIds: c.aws.forbiddenAccountIds },
    artifacts: {
      ...c.artifacts,
      promoteReaders: [...c.artifacts.promoteReaders],
      ...(c.artifacts.promoteFrom ? { promoteFrom: { ...c.artifacts.promoteFrom } } : {}),
    },
    oidc,
    fleet,
    baseAmiId: c.baseAmiId,
    runtime: {
      user: c.runtime.user ?? c.app,
      appDir: c.runtime.appDir ?? c.runtime.appRoot ?? `/opt/${c.app}`,
      appRoot: c.runtime.appRoot ?? c.runtime.appDir ?? `/opt/${c.app}`,
      processManager: c.runtime.processManager,
      service: c.runtime.service ?? c.app,
      healthUrl: c.runtime.healthUrl,
      healthTimeoutS: c.runtime.healthTimeoutS,
    },
    deploy: { ...c.deploy, alarms: [...c.deploy.alarms] },
    traffic: { ...c.traffic, targetGroupArns: [...c.traffic.targetGroupArns] },
    image: { ...c.image },
  };
  if (c.stateBackend) {
    const sb: StateBackendConfig = { bucket: c.stateBackend.bucket };
    if (c.stateBackend.keyPrefix !== undefined) sb.keyPrefix = c.stateBackend.keyPrefix;
    if (c.stateBackend.kmsKeyArn !== undefined) sb.kmsKeyArn = c.stateBackend.kmsKeyArn;
    config.stateBackend = sb;
  }
  return config;
}

/**
 * The batch size for a fleet of `fleetSize` instances: a count (capped at the fleet) or a
 * percentage (rounded down), never below 1.
 */
export function parseBatch(spec: string, fleetSize: number): number {
  if (!Number.isInteger(fleetSize) || fleetSize < 0) throw new RangeError(`fleet size must be a whole number >= 0, got ${fleetSize}`);
  const m = BATCH_RE.exec(String(spec).trim());
  if (!m) throw new ConfigError("zcp:deploy.batch", `must be 1..100% or a count, got ${JSON.stringify(spec)}`);
  const size = m[1] !== undefined ? Number(m[1]) : Math.floor((fleetSize * Number(m[2])) / 100);
  return Math.max(1, Math.min(size, Math.max(fleetSize, 1)));
}

/**
 * Raw config from stack settings: the `config:` map of a `Pulumi.<stack>.yaml` (values as
 * YAML gave them) or Pulumi's runtime config (objects as JSON text). Keeps the `zcp:` keys,
 * without the namespace; other namespaces (`aws:`, …) are not zcp's and are skipped.
 */
export function rawConfigFromEntries(entries: Readonly<Record<string, unknown>>): Record<string, unknown> {
  const raw: Record<string, unknown> = {};
  const prefix = `${CONFIG_NAMESPACE}:`;
  for (const [key, value] of Object.entries(entries)) {
    if (!key.startsWith(prefix)) continue;
    const name = key.slice(prefix.length);
    raw[name] = decodeValue(name, value);
  }
  return raw;
}

function decodeValue(name: string, value: unknown): unknown {
  if (typeof value !== "string" || !(OBJECT_KEYS as readonly string[]).includes(name)) return value;
  try {
    return JSON.parse(value) as unknown;
  } catch {
    throw new ConfigError(fieldName([name]), `must be an object (set it in Pulumi.<stack>.yaml or with --path), got ${show(value)}`);
  }
}

/**
 * Reads and validates the current stack's `zcp:` config. The only reader of Pulumi config
 * in zcp; unknown `zcp:` keys are reported like any other problem.
 */
export function loadConfig(): ZcpConfig {
  const config = new pulumi.Config(CONFIG_NAMESPACE);
  const entries: Record<string, unknown> = {};
  const prefix = `${CONFIG_NAMESPACE}:`;
  for (const key of Object.keys(pulumi.runtime.allConfig())) {
    if (!key.startsWith(prefix)) continue;
    entries[key] = config.get(key.slice(prefix.length));
  }
  return parseConfig(rawConfigFromEntries(entries), { stack: pulumi.getStack() });
}

/**
 * Cross-stack rule: prod has an AWS account of its own. Given every environment's config
 * (for example both `Pulumi.dev.yaml` and `Pulumi.prod.yaml`), throws when prod's account
 * is also configured for another environment.
 */
export function checkAccountSeparation(configs: readonly ZcpConfig[]): void {
  for (const prod of configs.filter((c) => c.environment === "prod")) {
    const shared = configs.find((c) => c.environment !== "prod" && c.aws.accountId === prod.aws.accountId);
    if (shared) {
      throw new ConfigError(
        "zcp:aws.accountId",
        `prod is configured with account ${prod.aws.accountId}, which "${shared.environment}" uses too; prod needs an account of its own`,
      );
    }
  }
}
