/**
 * Resolves `--env` into everything a command needs: the foundation's outputs, the release
 * settings from the environment's configuration, where the release stack's state lives, and
 * how commands reach instances.
 *
 * - `local`: the embedded environment (deploy/local/environment.ts).
 * - anything else: a foundation stack of the same name in the current project; its config
 *   (Pulumi.<env>.yaml, validated by shared/config.ts) and outputs are read, never changed.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { execFileSync } from "node:child_process";
import { LocalWorkspace } from "@pulumi/pulumi/automation/index.js";
import { ConfigError, describeError } from "../shared/errors.js";
import type { FoundationOutputs } from "../shared/outputs.js";
import { FOUNDATION_OUTPUT_KEYS } from "../shared/outputs.js";
import { parseConfig, rawConfigFromEntries, type ImageBakeStart, type ZcpConfig } from "../shared/config.js";
import type { AgentRuntime } from "./transport.js";
import type { TransportSpec } from "./steps/types.js";
import { findRepoRoot } from "./repo.js";
import { runPulumi } from "./state-copy.js";
import * as local from "./local/environment.js";
import * as fleet from "./local/fleet.js";
import { LB_BACKEND } from "./local/load-balancer.js";
import type { TrafficSpec } from "./traffic/controller.js";

export type SourceSpec = { kind: "dir"; dir: string } | { kind: "git"; repoDir: string; commit: string; subdir?: string };

export interface ReleaseSettings {
  accountId: string;
  runtime: AgentRuntime;
  deploy: { canary: number; batch: string; soakSeconds: number; maxErrors: number; commandTimeoutS: number; deliveryTimeoutS?: number };
  /** How batches leave the load balancer, and how much of the fleet stays in it. */
  traffic: { spec: TrafficSpec; minHealthyPercent: number };
  /** CloudWatch alarms that stop a release. */
  alarms: string[];
  image: { enabled: boolean; noReboot: boolean; retain: number; waitTimeoutMinutes: number; tagSnapshotsOnCreate: boolean; bakeStart: ImageBakeStart };
}

export interface EnvironmentContext {
  name: string;
  outputs: FoundationOutputs;
  settings: ReleaseSettings;
  backendUrl: string;
  /** Set for `file://` backends: lets the runner name a lock's holder and clear stale locks. */
  fileBackendDir?: string;
  /** How the release stack's secrets are encrypted (see releaseSecrets). */
  secrets: ReleaseSecrets;
  /** Extra environment for the engine (and so for the providers). */
  engineEnv: Record<string, string>;
  transport: TransportSpec;
  /** The project's work folder (state, workspaces, local fleet). */
  workDir: string;
  /** What `release` packages when --source is not given. */
  defaultSource: SourceSpec;
  /** Where the environment's users reach it, when zcp knows (the local load balancer). */
  loadBalancerUrl?: string;
  /** Version each instance runs, and how that was learned. */
  instanceVersions(ids: readonly string[]): Promise<Map<string, { version: string; source: string }>>;
}

/**
 * The traffic control a foundation environment gets: `auto` picks standby in the fleet's
 * Auto Scaling group (the foundation always has one), else the named target groups.
 */
export function trafficSpecFor(c: ZcpConfig, autoScalingGroupName: string | undefined): TrafficSpec {
  const t = c.traffic;
  const control = t.control === "auto" ? (autoScalingGroupName ? "asg-standby" : t.targetGroupArns.length > 0 ? "target-group" : "none") : t.control;
  // Target health moves on the health check's interval (30 s by default): polling faster buys nothing.
  const pollSeconds = 10;
  switch (control) {
    case "none":
      return { kind: "none" };
    case "target-group":
      return { kind: "target-group", targetGroupArns: [...t.targetGroupArns], healthyTimeoutS: t.healthyTimeoutS, pollSeconds };
    case "asg-standby":
      if (!autoScalingGroupName) throw new ConfigError("zcp:traffic.control", 'is "asg-standby" but the foundation exports no autoScalingGroupName');
      return { kind: "asg-standby", autoScalingGroupName, healthyTimeoutS: t.healthyTimeoutS, pollSeconds };
  }
}

export function settingsFromConfig(c: ZcpConfig, autoScalingGroupName?: string): ReleaseSettings {
  return {
    accountId: c.aws.accountId,
    runtime: {
      appDir: c.runtime.appDir,
      appUser: c.runtime.user,
      service: c.runtime.service,
      processManager: c.runtime.processManager,
      healthUrl: c.runtime.healthUrl,
      healthTimeoutS: c.runtime.healthTimeoutS,
      keepReleases: c.deploy.keepReleases,
    },
    deploy: {
      canary: c.deploy.canary,
      batch: c.deploy.batch,
      soakSeconds: c.deploy.soakSeconds,
      maxErrors: c.deploy.maxErrors,
      commandTimeoutS: c.deploy.commandTimeoutS,
      deliveryTimeoutS: c.deploy.deliveryTimeoutS,
    },
    traffic: { spec: trafficSpecFor(c, autoScalingGroupName), minHealthyPercent: c.traffic.minHealthyPercent },
    alarms: [...c.deploy.alarms],
    image: {
      enabled: c.image.enabled,
      noReboot: c.image.noReboot,
      retain: c.image.retain,
      waitTimeoutMinutes: c.image.waitTimeoutMinutes,
      tagSnapshotsOnCreate: true,
      bakeStart: c.image.bakeStart,
    },
  };
}

/**
 * The local environment's settings: short timeouts, a canary of one, batches of half the
 * fleet, batches drained from the local HAProxy (ZCP_LOCAL_TRAFFIC_CONTROL=off restarts
 * instances while they receive traffic), alarms from ZCP_LOCAL_ALARMS (comma-separated names
 * of alarms in the emulator).
 */
export function localSettings(appUser: string, loadBalancerSocket?: string): ReleaseSettings {
  const num = (name: string, fallback: number) => {
    const raw = process.env[name];
    if (raw === undefined) return fallback;
    const n = Number(raw);
    if (!Number.isInteger(n) || n < 0 || n > 3600) throw new ConfigError(name, `must be a whole number 0..3600, got ${JSON.stringify(raw)}`);
    return n;
  };
  const control = process.env.ZCP_LOCAL_TRAFFIC_CONTROL ?? "on";
  if (control !== "on" && control !== "off") throw new ConfigError("ZCP_LOCAL_TRAFFIC_CONTROL", `must be "on" or "off", got ${JSON.stringify(control)}`);
  // 0 keeps the batch sizes the demo and tests ask for (ZCP_LOCAL_BATCH); every batch still
  // leaves the load balancer while it restarts.
  const minHealthyPercent = num("ZCP_LOCAL_MIN_HEALTHY_PERCENT", 0);
  if (minHealthyPercent > 100) throw new ConfigError("ZCP_LOCAL_MIN_HEALTHY_PERCENT", `must be a whole number 0..100, got ${minHealthyPercent}`);
  const alarms = (process.env.ZCP_LOCAL_ALARMS ?? "").split(",").map((a) => a.trim()).filter(Boolean);
  for (const a of alarms) {
    if (!/^[A-Za-z0-9._-]{1,255}$/.test(a)) throw new ConfigError("ZCP_LOCAL_ALARMS", `must be comma-separated alarm names of letters, digits and ._-, got ${JSON.stringify(a)}`);
  }
  const traffic: TrafficSpec =
    control === "on" && loadBalancerSocket
      ? {
          kind: "haproxy",
          socketPath: loadBalancerSocket,
          backend: LB_BACKEND,
          drainTimeoutS: num("ZCP_LOCAL_DRAIN_TIMEOUT_S", 10),
          healthyTimeoutS: num("ZCP_LOCAL_HEALTH_TIMEOUT_S", 8) + 10,
        }
      : { kind: "none" };
  return {
    accountId: process.env.ZCP_LOCAL_ACCOUNT_ID ?? local.LOCAL_ACCOUNT,
    runtime: {
      appDir: "/srv/example",
      appUser,
      service: local.LOCAL_APP,
      processManager: "supervisor",
      healthUrl: "http://127.0.0.1:8080/health",
      healthTimeoutS: num("ZCP_LOCAL_HEALTH_TIMEOUT_S", 8),
      keepReleases: 3,
    },
    deploy: {
      canary: 1,
      batch: process.env.ZCP_LOCAL_BATCH ?? "50%",
      soakSeconds: num("ZCP_LOCAL_SOAK_S", 1),
      maxErrors: 0,
      commandTimeoutS: num("ZCP_LOCAL_COMMAND_TIMEOUT_S", 120),
    },
    traffic: { spec: traffic, minHealthyPercent },
    alarms,
    // The emulator rejects snapshot tag specifications in CreateImage; tag them afterwards.
    image: { enabled: true, noReboot: true, retain: 3, waitTimeoutMinutes: 5, tagSnapshotsOnCreate: false, bakeStart: "canary" },
  };
}

function gitHead(dir: string): SourceSpec {
  try {
    const top = execFileSync("git", ["-C", dir, "rev-parse", "--show-toplevel"], { encoding: "utf8" }).trim();
    const commit = execFileSync("git", ["-C", dir, "rev-parse", "HEAD"], { encoding: "utf8" }).trim();
    // The project may live below the repository's top level; package only the project.
    const subdir = path.relative(top, path.resolve(dir));
    return { kind: "git", repoDir: top, commit, ...(subdir ? { subdir } : {}) };
  } catch {
    return { kind: "dir", dir };
  }
}

/**
 * How the release stack encrypts its secrets. A `file://` backend is the local environment's
 * (or a test's): a fixed passphrase, since nothing there is secret. Any other backend (S3) is
 * a real environment's, whose state is shared and outlives the run: its secrets provider is
 * the configured KMS key (`zcp:stateBackend.kmsKeyArn`), and a passphrase is refused, so
 * nothing ever encrypts with a value that sits in a workflow or in this code.
 */
export interface ReleaseSecrets {
  /** Pulumi `secretsProvider` for new stacks: `passphrase` or `awskms:///ARN?region=REGION`. */
  secretsProvider: string;
  /** PULUMI_CONFIG_PASSPHRASE for the engine; only with `passphrase`. */
  passphrase?: string;
}

/** The passphrase of `file://` release stacks; never accepted elsewhere. */
export const LOCAL_PASSPHRASE = "zcp-local-only";

export function releaseSecrets(
  backendUrl: string,
  kmsKeyArn: string | undefined,
  region: string,
  env: Readonly<Record<string, string | undefined>> = process.env,
): ReleaseSecrets {
  if (backendUrl.startsWith("file://")) {
    return { secretsProvider: "passphrase", passphrase: env.PULUMI_CONFIG_PASSPHRASE ?? LOCAL_PASSPHRASE };
  }
  for (const name of ["PULUMI_CONFIG_PASSPHRASE", "PULUMI_CONFIG_PASSPHRASE_FILE"]) {
    if (env[name] !== undefined) {
      throw new ConfigError(
        name,
        `must not be set for a release stack on ${backendUrl}: its secrets are encrypted with the KMS key of zcp:stateBackend.kmsKeyArn, never a passphrase`,
      );
    }
  }
  if (!kmsKeyArn) {
    throw new ConfigError("zcp:stateBackend.kmsKeyArn", `is required for a release stack on ${backendUrl}: it encrypts the stack's secrets`);
  }
  // The key's own region (a key ARN names it), else the environment's.
  const keyRegion = /^arn:[a-z-]+:kms:([a-z0-9-]+):/.exec(kmsKeyArn)?.[1] ?? region;
  return { secretsProvider: `awskms:///${kmsKeyArn}?region=${keyRegion}` };
}

export async function resolveEnvironment(name: string, log: (m: string) => void): Promise<EnvironmentContext> {
  if (name === local.LOCAL_ENV) return resolveLocal(log);
  return resolveFoundation(name);
}

async function resolveLocal(log: (m: string) => void): Promise<EnvironmentContext> {
  const env = await local.ensureLocalEnvironment(log);
  const backendDir = local.localBackendDir();
  fs.mkdirSync(backendDir, { recursive: true });
  return {
    name: local.LOCAL_ENV,
    outputs: env.outputs,
    settings: localSettings(env.appUser, env.loadBalancer.socketPath),
    loadBalancerUrl: `http://127.0.0.1:${env.loadBalancer.port}`,
    backendUrl: `file://${backendDir}`,
    fileBackendDir: backendDir,
    secrets: releaseSecrets(`file://${backendDir}`, undefined, "us-east-1"),
    engineEnv: local.localAwsEnv(env.endpoint),
    transport: { kind: "local", fleetRoot: local.fleetRoot() },
    workDir: local.workRoot(),
    defaultSource: { kind: "dir", dir: path.join(findRepoRoot(), "examples", "app") },
    async instanceVersions(ids) {
      const out = new Map<string, { version: string; source: string }>();
      for (const id of ids) {
        const inst = env.instances.find((i) => i.instanceId === id);
        if (!inst) continue;
        const v = await fleet.readVersion(fleet.loadInstance(local.fleetRoot(), id));
        out.set(id, { version: v?.version ?? "not answering", source: `GET :${inst.port}/version` });
      }
      return out;
    },
  };
}

/** Reads a foundation stack's config and outputs; changes nothing. */
async function resolveFoundation(name: string): Promise<EnvironmentContext> {
  const projectDir = process.env.ZCP_PROJECT_DIR ?? process.cwd();
  if (!fs.existsSync(path.join(projectDir, "Pulumi.yaml"))) {
    throw new ConfigError("--env", `unknown environment "${name}": no Pulumi.yaml in ${projectDir} to find a foundation stack (use --env local for the embedded environment)`);
  }
  if (!fs.existsSync(path.join(projectDir, `Pulumi.${name}.yaml`))) {
    throw new ConfigError("--env", `unknown environment "${name}": no Pulumi.${name}.yaml in ${projectDir}`);
  }
  let stack;
  try {
    stack = await LocalWorkspace.selectStack({ stackName: name, workDir: projectDir });
  } catch (err) {
    throw new ConfigError("--env", `cannot open the foundation stack "${name}": ${describeError(err)}`, { cause: err });
  }
  // Config and outputs are read without --show-secrets (the automation API's getAllConfig()
  // and outputs() pass it): loading a state whose secrets provider is awskms:// to show its
  // secrets decrypts the stack's data key, and the preview role may not (docs/security.md).
  // Neither holds a secret zcp reads; a secret value reads as absent or "[secret]".
  const cmd = stack.workspace.pulumiCommand;
  const listed = JSON.parse((await runPulumi(cmd, ["config", "--json", "--stack", name], projectDir, {})).stdout) as Record<string, { value?: unknown }>;
  const entries = Object.fromEntries(Object.entries(listed).map(([k, v]) => [k, v.value]));
  const raw = rawConfigFromEntries(entries);
  const config = parseConfig(raw, { stack: name });
  const outs = JSON.parse((await runPulumi(cmd, ["stack", "output", "--json", "--stack", name], projectDir, {})).stdout) as Record<string, unknown>;
  const missing = FOUNDATION_OUTPUT_KEYS.filter((k) => outs[k] === undefined);
  if (missing.length > 0) {
    throw new ConfigError("--env", `foundation stack "${name}" lacks outputs ${missing.join(", ")}; run its \`pulumi up\` first`);
  }
  const outputs = outs as unknown as FoundationOutputs;
  const backendUrl =
    process.env.ZCP_RELEASE_BACKEND_URL ??
    (config.stateBackend ? `s3://${config.stateBackend.bucket}/${config.stateBackend.keyPrefix ?? "zcp-release"}` : process.env.PULUMI_BACKEND_URL);
  if (!backendUrl) throw new ConfigError("zcp:stateBackend", "no state backend configured for the release stack");
  const fileBackendDir = backendUrl.startsWith("file://") ? backendUrl.slice("file://".length) : undefined;
  return {
    name,
    outputs,
    settings: settingsFromConfig(config, outputs.autoScalingGroupName),
    backendUrl,
    ...(fileBackendDir ? { fileBackendDir } : {}),
    secrets: releaseSecrets(backendUrl, config.stateBackend?.kmsKeyArn, config.aws.region),
    engineEnv: {},
    transport: { kind: "ssm", documentName: outputs.documentName },
    workDir: path.resolve(process.env.ZCP_WORK_DIR ?? path.join(projectDir, ".work")),
    defaultSource: gitHead(projectDir),
    async instanceVersions(ids) {
      // SSM offers no read without running a command; the last release's record says which
      // version each instance got.
      const out = new Map<string, { version: string; source: string }>();
      for (const id of ids) out.set(id, { version: "see `zcp history`", source: "release stack" });
      return out;
    },
  };
}
