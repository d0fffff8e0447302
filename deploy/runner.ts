/**
 * The release runner: each release is one update of the environment's release stack, driven
 * through the automation API with an inline program (deploy/program.ts).
 *
 * Order of a release, and why:
 *   1. validate flags and configuration, check the caller's account, and that the planned
 *      release fits in what is left of the role session (session-budget.ts) — nothing changed yet
 *   2. refuse early when another release holds the stack (exit 3)
 *   3. package deterministically and upload (an identical artifact is reused; the same
 *      version with other content is refused: artifacts are immutable)
 *   4. recover a stack an interrupted release left behind (stale lock, pending operations)
 *   5. `up`: Artifact → FleetDeployment → BakedImage → LaunchTemplateRelease → LatestPointer
 */
import * as fs from "node:fs";
import { processAlive } from "./process.js";
import * as os from "node:os";
import * as path from "node:path";
import { GetCallerIdentityCommand } from "@aws-sdk/client-sts";
import { LocalWorkspace, StackNotFoundError, type Stack, type UpdateSummary } from "@pulumi/pulumi/automation/index.js";
import { ConfigError, ReleaseFailedError, ReleaseLockedError, WrongAccountError, describeError } from "../shared/errors.js";
import { artifactKey, RELEASE_PROJECT } from "../shared/naming.js";
import { createAwsClients, destroyAwsClients } from "./aws/clients.js";
import { headArtifact, s3Uri } from "./aws/artifacts.js";
import { readLatestPointer } from "./aws/latest-pointer.js";
import { readImageParameter } from "./aws/image-parameter.js";
import { discoverFleet } from "./aws/fleet.js";
import { classifyEngineError, describeLockHolder, type LockHolder } from "./engine-errors.js";
import { buildArtifact } from "./build/index.js";
import { buildAndUpload, packageSpecOf } from "./build/publish.js";
import { releaseProgram, type ReleasePlan } from "./program.js";
import { PROGRESS_ENV, readProgress, type ProgressRecord } from "./progress.js";
import { dependenciesDir, toolsDir } from "./repo.js";
import { pulumiCommand, selectExistingStack as selectStackIfPresent, upWithoutReadBack } from "./release-engine.js";
import { RULES, checkValue } from "../shared/rules.js";
import { exportStateWithoutDecrypting, makeThrowawayCopy } from "./state-copy.js";
import { checkReleaseSession } from "./session-budget.js";
import { appendStepSummary, markdownTable, ProgressView, table, type Output } from "./view.js";
import type { EnvironmentContext, SourceSpec } from "./environments.js";
import type { InstanceReport } from "./steps/types.js";
import { mark, timed } from "./timings.js";

export interface ReleaseRequest {
  version: string;
  source?: SourceSpec;
  canary?: number;
  batch?: string;
  skipImage?: boolean;
  /**
   * The artifact must already exist (a rollback, or `release --prebuilt` of what `zcp build`
   * uploaded); nothing is built.
   */
  existingArtifactOnly?: boolean;
  kind?: "release" | "rollback";
}

export interface ReleaseSummary {
  environment: string;
  version: string;
  previousVersion: string | null;
  sha256: string;
  artifact: string;
  instances: InstanceReport[];
  imageId: string;
  /** The image parameter's version naming `imageId` (0 when no image was released). */
  imageParameterVersion: number;
  /** The image new instances launched before this release ("" when no image was released). */
  previousImageId: string;
  durationMs: number;
  fleetDurationMs: number;
  batchAgentMs: number[];
  /** Per batch: how long taking it out of traffic took. */
  batchDrainMs: number[];
  /** How batches left the load balancer (none, haproxy, target-group, asg-standby). */
  trafficControl: string;
  engineOperations: number;
}

// ---------------------------------------------------------------- workspace

function engineEnvFor(ctx: EnvironmentContext, progressFile: string): Record<string, string> {
  return {
    ...ctx.engineEnv,
    PULUMI_BACKEND_URL: ctx.backendUrl,
    PULUMI_SKIP_UPDATE_CHECK: "true",
    PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION: "true",
    PULUMI_HOME: process.env.PULUMI_HOME ?? path.join(toolsDir(), "pulumi-home"),
    // Only file backends (the local environment) use a passphrase; others use KMS.
    ...(ctx.secrets.passphrase !== undefined ? { PULUMI_CONFIG_PASSPHRASE: ctx.secrets.passphrase } : {}),
    [PROGRESS_ENV]: progressFile,
    // The provider host is a Node.js process that loads the SDK and the AWS clients on every
    // release; compiled code cached on disk (as bin/zcp does for the runner) halves that, and
    // the preload the runner itself starts with spares it what the SDK loads for nothing.
    ...compileCacheEnv(),
    ...sdkPreloadEnv(),
  };
}

/** NODE_OPTIONS for the engine's Node.js processes: the caller's, plus sdk-preload.js. */
export function sdkPreloadEnv(current: string | undefined = process.env.NODE_OPTIONS): Record<string, string> {
  const preload = path.join(__dirname, "sdk-preload.js");
  // NODE_OPTIONS splits on spaces and honours double quotes, without escapes inside them.
  if (/["\\]/.test(preload) || !fs.existsSync(preload)) return current ? { NODE_OPTIONS: current } : {};
  return { NODE_OPTIONS: [current, `--require "${preload}"`].filter(Boolean).join(" ") };
}

function compileCacheEnv(): Record<string, string> {
  if (process.env.NODE_COMPILE_CACHE) return { NODE_COMPILE_CACHE: process.env.NODE_COMPILE_CACHE };
  const dir = (require("node:module") as { getCompileCacheDir?: () => string | undefined }).getCompileCacheDir?.();
  return dir ? { NODE_COMPILE_CACHE: dir } : {};
}

/** Where the runner remembers the Pulumi CLI's version (see release-engine.ts). */
function cliRecordFile(ctx: EnvironmentContext): string {
  return path.join(ctx.workDir, "release", "pulumi-cli.json");
}

/** Puts the project's tools (pulumi, the dynamic-provider shim) first on PATH when present. */
export function useProjectTools(): void {
  const tools = toolsDir();
  const dirs = [path.join(tools, "bin"), path.join(tools, "node", "bin")].filter((d) => fs.existsSync(d));
  const current = (process.env.PATH ?? "").split(path.delimiter);
  process.env.PATH = [...dirs.filter((d) => !current.includes(d)), ...current].join(path.delimiter);
}

function workspaceDir(ctx: EnvironmentContext): string {
  const dir = path.join(ctx.workDir, "release", ctx.name);
  fs.mkdirSync(dir, { recursive: true });
  linkDependencies(dir);
  return dir;
}

/** The engine starts dynamic providers from ./node_modules of the program's folder. */
function linkDependencies(dir: string): void {
  const link = path.join(dir, "node_modules");
  const target = dependenciesDir();
  let current: string | undefined;
  try {
    current = fs.readlinkSync(link);
  } catch {
    current = undefined;
  }
  if (current !== target) {
    fs.rmSync(link, { force: true, recursive: true });
    fs.symlinkSync(target, link);
  }
}

/** The release stack if it exists (undefined on a first release), repaired if a release was interrupted. */
async function openExistingStack(
  ctx: EnvironmentContext,
  progressFile: string,
  log: (m: string) => void,
  mayHavePendingOperations: boolean,
): Promise<Stack | undefined> {
  const workDir = workspaceDir(ctx);
  const stack = await selectStackIfPresent({
    stackName: ctx.name,
    program: async () => ({}),
    workDir,
    projectSettings: releaseProjectSettings(ctx),
    envVars: engineEnvFor(ctx, progressFile),
    pulumiCommand: await pulumiCommand(cliRecordFile(ctx), engineEnvFor(ctx, progressFile).PATH),
    ...(ctx.secrets.secretsProvider !== undefined ? { secretsProvider: ctx.secrets.secretsProvider } : {}),
    ...(ctx.fileBackendDir ? { fileBackend: { dir: ctx.fileBackendDir, project: RELEASE_PROJECT } } : {}),
  }).catch((err: unknown) => {
    if (err instanceof StackNotFoundError) return undefined;
    throw err;
  });
  if (!stack) return undefined;
  if (mayHavePendingOperations) await recoverInterruptedUpdate(stack, log);
  return stack;
}

function releaseProjectSettings(ctx: EnvironmentContext) {
  return {
    name: RELEASE_PROJECT,
    runtime: "nodejs" as const,
    description: "zcp release stack: one update per release",
    backend: { url: ctx.backendUrl },
  };
}

/** Runs the engine's preview of `stack` and collects the dynamic resources' operations. */
async function previewSteps(stack: Stack, steps: PreviewSummary["steps"]): Promise<void> {
  await stack.preview({
    onOutput: () => undefined,
    onEvent: (e) => {
      const m = e.resourcePreEvent?.metadata;
      if (!m || !m.type.includes("dynamic")) return;
      const olds = (m.old?.inputs ?? {}) as Record<string, unknown>;
      const news = (m.new?.inputs ?? {}) as Record<string, unknown>;
      if (m.op === "replace" || m.op === "delete-replaced") return; // the create-replacement line says it
      const changed = Object.keys({ ...olds, ...news }).filter((k) => !k.startsWith("__") && JSON.stringify(olds[k]) !== JSON.stringify(news[k]));
      steps.push({ resource: m.type.split(":").pop() ?? m.type, op: m.op === "create-replacement" ? "replace" : m.op, changed });
    },
  });
}

/**
 * A throwaway copy of the release stack, with `plan`'s program, in a temporary folder; undefined
 * when no release made the stack yet. The real stack's state is read once, with
 * `pulumi stack export` and no `--show-secrets`, which decrypts nothing (deploy/state-copy.ts);
 * nothing is written to the real backend. The copy's secrets provider is a random passphrase,
 * so the preview needs no KMS key, and so no `kms:Decrypt` for the preview role.
 *
 * The local environment (a passphrase, a `file://` backend) could preview its stack in place,
 * but it takes the same path: one way to preview, which every local and integration run
 * exercises as CI runs it against S3, for the price of one more short CLI run (export, init
 * and import of the copy where a preview in place selects the stack).
 */
async function releaseStackCopy(ctx: EnvironmentContext, plan: ReleasePlan, progressFile: string): Promise<{ stack: Stack; dir: string } | undefined> {
  const envVars = engineEnvFor(ctx, progressFile);
  const cmd = await pulumiCommand(cliRecordFile(ctx), envVars.PATH);
  // Writes the project file the CLI needs to find the stack; the backend is only read.
  const real = await LocalWorkspace.create({ workDir: workspaceDir(ctx), projectSettings: releaseProjectSettings(ctx), envVars, pulumiCommand: cmd });
  const exported = await exportStateWithoutDecrypting(cmd, real.workDir, envVars, ctx.name);
  if (exported === undefined) return undefined;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `zcp-preview-${ctx.name}-`));
  try {
    linkDependencies(dir);
    // The copy has its own passphrase; the real stack's (the local one) stays out of it.
    const { PULUMI_CONFIG_PASSPHRASE: _real, ...copyEnv } = envVars;
    void _real;
    const copy = await makeThrowawayCopy({
      stackName: ctx.name,
      projectSettings: releaseProjectSettings(ctx),
      exported,
      dir,
      program: releaseProgram(plan),
      envVars: copyEnv,
      pulumiCommand: cmd,
    });
    return { stack: copy.stack, dir };
  } catch (err) {
    fs.rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}

/** The steps of the release program (deploy/program.ts), in its order, all to be created. */
function firstReleaseSteps(plan: ReleasePlan): PreviewSummary["steps"] {
  const names = ["Artifact", "FleetDeployment", ...(plan.image.enabled ? ["BakedImage", "LaunchTemplateRelease"] : []), "LatestPointer"];
  return names.map((resource) => ({ resource, op: "create", changed: [] }));
}

async function openStack(ctx: EnvironmentContext, plan: ReleasePlan | undefined, progressFile: string): Promise<Stack> {
  const workDir = workspaceDir(ctx);
  const program = plan ? releaseProgram(plan) : async () => ({});
  return LocalWorkspace.createOrSelectStack(
    { stackName: ctx.name, projectName: RELEASE_PROJECT, program },
    {
      workDir,
      projectSettings: releaseProjectSettings(ctx),
      envVars: engineEnvFor(ctx, progressFile),
      pulumiCommand: await pulumiCommand(cliRecordFile(ctx), engineEnvFor(ctx, progressFile).PATH),
      secretsProvider: ctx.secrets.secretsProvider,
    },
  );
}

// ---------------------------------------------------------------- checks

export async function checkAccount(ctx: EnvironmentContext): Promise<void> {
  const clients = createAwsClients({ region: ctx.outputs.region });
  try {
    const who = await clients.sts.send(new GetCallerIdentityCommand({}));
    const actual = who.Account ?? "unknown";
    if (actual !== ctx.settings.accountId) throw new WrongAccountError(ctx.name, ctx.settings.accountId, actual);
  } catch (err) {
    if (err instanceof WrongAccountError) throw err;
    throw new ConfigError("credentials", `cannot tell which AWS account these credentials belong to: ${describeError(err)}`, { cause: err });
  } finally {
    destroyAwsClients(clients);
  }
}

const pidAlive = processAlive;

function lockDir(backendDir: string): string {
  return path.join(backendDir, ".pulumi", "locks", "organization", RELEASE_PROJECT);
}

/**
 * File backends only: who holds the release stack's lock. A lock whose process is gone on
 * this host is stale (a runner was killed) and is removed, which is what `pulumi cancel` does
 * for a file backend.
 */
export function inspectFileLock(ctx: EnvironmentContext, log: (m: string) => void): boolean {
  if (!ctx.fileBackendDir) return false;
  let removedStale = false;
  const dir = path.join(lockDir(ctx.fileBackendDir), ctx.name);
  let files: string[];
  try {
    files = fs.readdirSync(dir).filter((f) => f.endsWith(".json"));
  } catch {
    return false;
  }
  for (const f of files) {
    const file = path.join(dir, f);
    let holder: LockHolder;
    try {
      holder = JSON.parse(fs.readFileSync(file, "utf8")) as LockHolder;
    } catch {
      holder = {};
    }
    const local = holder.hostname === undefined || holder.hostname === os.hostname();
    if (local && holder.pid !== undefined && !pidAlive(holder.pid)) {
      fs.rmSync(file, { force: true });
      log(`recovered: removed the lock of an interrupted release (${describeLockHolder(holder)}, no longer running)`);
      removedStale = true;
      continue;
    }
    throw new ReleaseLockedError(ctx.name, describeLockHolder(holder));
  }
  return removedStale;
}

/** Clears what an interrupted update left in the stack, then refreshes it, saying so. */
async function recoverInterruptedUpdate(stack: Stack, log: (m: string) => void): Promise<void> {
  const state = await stack.exportStack();
  const deployment = state.deployment as { pending_operations?: { type?: string; resource?: { urn?: string } }[] } | undefined;
  const pending = deployment?.pending_operations ?? [];
  if (pending.length === 0) return;
  log(
    `recovered: an interrupted release left ${pending.length} pending operation(s) ` +
      `(${pending.map((p) => `${p.type ?? "?"} ${p.resource?.urn?.split("::").pop() ?? "?"}`).join(", ")}); clearing them and refreshing the stack`,
  );
  if (deployment) deployment.pending_operations = [];
  await stack.importStack(state);
  await stack.refresh({ onOutput: () => undefined });
}

// ---------------------------------------------------------------- release

function fleetSettings(ctx: EnvironmentContext, req: ReleaseRequest): ReleasePlan["fleet"] {
  const d = ctx.settings.deploy;
  return {
    runtime: ctx.settings.runtime,
    canary: req.canary !== undefined ? checkValue("--canary", RULES.canary, req.canary) : d.canary,
    batch: req.batch !== undefined ? checkValue("--batch", RULES.batch, req.batch) : d.batch,
    soakSeconds: d.soakSeconds,
    maxErrors: d.maxErrors,
    commandTimeoutS: d.commandTimeoutS,
    ...(d.deliveryTimeoutS !== undefined ? { deliveryTimeoutS: d.deliveryTimeoutS } : {}),
    transport: ctx.transport,
    traffic: ctx.settings.traffic.spec,
    minHealthyPercent: ctx.settings.traffic.minHealthyPercent,
    alarmNames: ctx.settings.alarms,
    ...(ctx.outputs.autoScalingGroupName ? { autoScalingGroupName: ctx.outputs.autoScalingGroupName } : {}),
  };
}

/** Builds and uploads the release's artifact, or finds the existing one (rollback, --prebuilt). */
async function prepareArtifact(ctx: EnvironmentContext, req: ReleaseRequest, log: (m: string) => void): Promise<{ key: string; sha256: string }> {
  const key = artifactKey(ctx.outputs.app, req.version);
  const clients = createAwsClients({ region: ctx.outputs.region });
  try {
    if (req.existingArtifactOnly) {
      const head = await headArtifact(clients.s3, ctx.outputs.bucket, key);
      if (!head?.sha256) {
        if (req.kind === "rollback") {
          throw new ConfigError("--to", `no artifact for version ${req.version} at ${s3Uri(ctx.outputs.bucket, key)}; only released versions can be rolled back to`);
        }
        throw new ConfigError(
          "--prebuilt",
          `no artifact for version ${req.version} at ${s3Uri(ctx.outputs.bucket, key)}; build it first (zcp build --env ${ctx.name} --version ${req.version}) or promote it, or release without --prebuilt`,
        );
      }
      return { key, sha256: head.sha256 };
    }
    const published = await buildAndUpload(ctx, { version: req.version, source: req.source ?? ctx.defaultSource }, log);
    return { key: published.key, sha256: published.sha256 };
  } finally {
    destroyAwsClients(clients);
  }
}

async function currentLatestEtag(ctx: EnvironmentContext): Promise<{ etag: string; version: string | null; imageId: string | null }> {
  const clients = createAwsClients({ region: ctx.outputs.region });
  try {
    const read = await readLatestPointer(clients.s3, ctx.outputs.bucket, ctx.outputs.app);
    return { etag: read?.etag ?? "", version: read?.pointer.version ?? null, imageId: read?.pointer.imageId ?? null };
  } finally {
    destroyAwsClients(clients);
  }
}

function buildPlan(ctx: EnvironmentContext, req: ReleaseRequest, artifact: { key: string; sha256: string }, latestEtag: string): ReleasePlan {
  return {
    app: ctx.outputs.app,
    environment: ctx.name,
    region: ctx.outputs.region,
    bucket: ctx.outputs.bucket,
    version: req.version,
    artifactKey: artifact.key,
    sha256: artifact.sha256,
    fleet: fleetSettings(ctx, req),
    image: { ...ctx.settings.image, enabled: ctx.settings.image.enabled && !req.skipImage },
    launchTemplateId: ctx.outputs.launchTemplateId,
    imageParameterName: ctx.outputs.imageParameterName,
    latestEtag,
  };
}

/** Tails the progress file into the view while `work` runs. */
async function withProgress<T>(file: string, view: ProgressView, work: () => Promise<T>): Promise<{ value: T; records: ProgressRecord[] }> {
  let offset = 0;
  const records: ProgressRecord[] = [];
  const drain = () => {
    const r = readProgress(file, offset);
    offset = r.offset;
    for (const rec of r.records) {
      records.push(rec);
      view.record(rec);
    }
  };
  const timer = setInterval(() => {
    drain();
    view.tick();
  }, 200);
  try {
    const value = await work();
    return { value, records };
  } catch (err) {
    drain();
    (err as { zcpProgress?: ProgressRecord[] }).zcpProgress = records;
    throw err;
  } finally {
    clearInterval(timer);
    drain();
  }
}

export async function release(ctx: EnvironmentContext, req: ReleaseRequest, out: Output, opts: { live: boolean }): Promise<ReleaseSummary> {
  const started = Date.now();
  const view = new ProgressView(out, opts.live);
  const log = (m: string) => view.line(m);
  const kind = req.kind ?? "release";
  try {
    await timed("runner: account check", () => checkAccount(ctx));
    await timed("runner: session check", () => checkReleaseSession({ fleet: fleetSettings(ctx, req), image: { ...ctx.settings.image, enabled: ctx.settings.image.enabled && !req.skipImage } }, ctx, log));
    // Only an engine that died mid-update leaves pending operations, and on a file backend
    // such an engine also leaves its lock behind: no stale lock, nothing to repair.
    const staleLockRemoved = inspectFileLock(ctx, log);
    const mayHavePendingOperations = ctx.fileBackendDir === undefined || staleLockRemoved;
    const progressFile = path.join(workspaceDir(ctx), `progress-${process.pid}-${Date.now()}.jsonl`);
    fs.writeFileSync(progressFile, "");
    // Selecting an existing stack (and repairing what an interrupted release left) changes no
    // release state, so it runs while the artifact is packaged and uploaded.
    const existing = timed("runner: open release stack", () => openExistingStack(ctx, progressFile, log, mayHavePendingOperations)).then(
      (stack) => ({ stack }),
      (error: unknown) => ({ error }),
    );
    try {
      const artifact = await timed("runner: artifact", () => prepareArtifact(ctx, req, log));
      const latest = await timed("runner: latest pointer read", () => currentLatestEtag(ctx));
      log(`${kind} ${latest.version ?? "(none)"} → ${req.version} on ${ctx.name}`);
      const plan = buildPlan(ctx, req, artifact, latest.etag);
      const opened = await existing;
      if ("error" in opened) throw opened.error;
      const stack = opened.stack ?? (await openStack(ctx, plan, progressFile));
      const program = releaseProgram(plan);
      stack.workspace.program = async () => {
        mark("engine: program starts");
        return await program();
      };
      let engineOperations = 0;
      mark("runner: up start");
      const { value: result } = await withProgress(progressFile, view, () =>
        upWithoutReadBack(stack, {
          message: `${kind} ${req.version}`,
          onOutput: () => undefined,
          onEvent: (e) => {
            if (e.resOutputsEvent) engineOperations++;
          },
        }),
      );
      mark("runner: up end");
      const o = result.outputs;
      const summary: ReleaseSummary = {
        environment: ctx.name,
        version: String(o.version?.value ?? req.version),
        previousVersion: (o.previousVersion?.value as string | null | undefined) ?? latest.version,
        sha256: artifact.sha256,
        artifact: String(o.artifact?.value ?? ""),
        instances: (o.instances?.value as InstanceReport[] | undefined) ?? [],
        imageId: String(o.imageId?.value ?? ""),
        imageParameterVersion: Number(o.imageParameterVersion?.value ?? 0),
        previousImageId: String(o.previousImageId?.value ?? ""),
        durationMs: Date.now() - started,
        fleetDurationMs: Number(o.fleetDurationMs?.value ?? 0),
        batchAgentMs: (o.batchAgentMs?.value as number[] | undefined) ?? [],
        batchDrainMs: (o.batchDrainMs?.value as number[] | undefined) ?? [],
        trafficControl: ctx.settings.traffic.spec.kind,
        engineOperations,
      };
      return summary;
    } finally {
      // Never leave an engine command running behind a refused release.
      await existing;
      fs.rmSync(progressFile, { force: true });
    }
  } catch (err) {
    throw explainFailure(err, ctx);
  } finally {
    view.close();
  }
}

/** Turns an engine failure into a typed error whose message a person can act on. */
function explainFailure(err: unknown, ctx: EnvironmentContext): Error {
  const records = (err as { zcpProgress?: ProgressRecord[] }).zcpProgress ?? [];
  const classified = classifyEngineError(err, {
    environment: ctx.name,
    ...(ctx.fileBackendDir ? { fileBackend: { dir: ctx.fileBackendDir, project: RELEASE_PROJECT, stack: ctx.name } } : {}),
  });
  const failedSteps = records.filter((r): r is Extract<ProgressRecord, { kind: "step" }> => r.kind === "step" && r.state === "failed");
  if (classified instanceof ReleaseFailedError && failedSteps.length > 0) {
    const detail = failedSteps.map((s) => `${s.step}: ${s.detail ?? "failed"}`).join("\n");
    return new ReleaseFailedError(detail, { cause: err });
  }
  return classified;
}

export function formatReleaseSummary(s: ReleaseSummary): string {
  const rows = s.instances.map((i) => [i.instanceId, String(i.batch), i.status, i.previous ?? "-", `${(i.durationMs / 1000).toFixed(1)}s`]);
  return [
    `released ${s.version} to ${s.environment} (previous: ${s.previousVersion ?? "none"}) in ${(s.durationMs / 1000).toFixed(1)}s`,
    table(["instance", "batch", "status", "previous", "agent time"], rows),
    `artifact   ${s.artifact}  sha256 ${s.sha256}`,
    `image      ${s.imageId || "(not baked)"}`,
    `boots      ${s.imageParameterVersion ? `${s.imageId} (image parameter version ${s.imageParameterVersion}, was ${s.previousImageId || "none"})` : "(unchanged)"}`,
    `latest     ${s.version}`,
  ].join("\n");
}

export function releaseMarkdown(s: ReleaseSummary): string {
  return [
    `### zcp: ${s.environment} released ${s.version}`,
    "",
    `Previous version: ${s.previousVersion ?? "none"} · duration ${(s.durationMs / 1000).toFixed(1)}s · image ${s.imageId || "not baked"} · image parameter ${s.imageParameterVersion ? `version ${s.imageParameterVersion} (was ${s.previousImageId || "none"})` : "unchanged"}`,
    "",
    markdownTable(
      ["instance", "batch", "status", "previous", "agent time"],
      s.instances.map((i) => [i.instanceId, String(i.batch), i.status, i.previous ?? "-", `${(i.durationMs / 1000).toFixed(1)}s`]),
    ),
  ].join("\n");
}

export function failureMarkdown(env: string, version: string, message: string): string {
  return [`### zcp: release of ${version} to ${env} failed`, "", "```", message, "```"].join("\n");
}

export { appendStepSummary };

// ---------------------------------------------------------------- rollback

/** Rollback is a release of an earlier version whose artifact (and image) already exist. */
export async function rollbackTarget(ctx: EnvironmentContext, to: string | undefined): Promise<string> {
  if (to) return to;
  const clients = createAwsClients({ region: ctx.outputs.region });
  try {
    const read = await readLatestPointer(clients.s3, ctx.outputs.bucket, ctx.outputs.app);
    const previous = read?.pointer.previous;
    if (!previous) throw new ConfigError("--to", "latest.json names no previous version; give the version to roll back to");
    return previous;
  } finally {
    destroyAwsClients(clients);
  }
}

// ---------------------------------------------------------------- preview

export interface PreviewSummary {
  environment: string;
  versionFrom: string | null;
  versionTo: string;
  steps: { resource: string; op: string; changed: string[] }[];
  image: string;
  /** What new instances launch: the image parameter now, and whether the release moves it. */
  imageParameter: string;
}

export async function preview(ctx: EnvironmentContext, req: ReleaseRequest, out: Output): Promise<PreviewSummary> {
  await checkAccount(ctx);
  const key = artifactKey(ctx.outputs.app, req.version);
  let sha256: string;
  const clients = createAwsClients({ region: ctx.outputs.region });
  try {
    const head = await headArtifact(clients.s3, ctx.outputs.bucket, key);
    if (head?.sha256) sha256 = head.sha256;
    else {
      // Not uploaded yet: the checksum the release would have, without uploading anything.
      const pkg = await buildArtifact({ version: req.version, source: packageSpecOf(req.source ?? ctx.defaultSource) });
      sha256 = pkg.sha256;
      fs.rmSync(path.dirname(pkg.path), { recursive: true, force: true });
    }
  } finally {
    destroyAwsClients(clients);
  }
  const latest = await currentLatestEtag(ctx);
  const plan = buildPlan(ctx, req, { key, sha256 }, latest.etag);
  const paramClients = createAwsClients({ region: ctx.outputs.region });
  // The parameter, not the template: its value is the image new instances launch, and the
  // preview role may read it (the template's versions carry user data, which it may not).
  const parameter = await readImageParameter(paramClients.ssm, ctx.outputs.imageParameterName).finally(() => destroyAwsClients(paramClients));
  const boots = parameter ? `${ctx.outputs.imageParameterName} version ${parameter.version} (${parameter.imageId})` : `${ctx.outputs.imageParameterName} (missing)`;
  const progressFile = path.join(workspaceDir(ctx), `preview-${process.pid}.jsonl`);
  fs.writeFileSync(progressFile, "");
  try {
    const steps: PreviewSummary["steps"] = [];
    const copy = await releaseStackCopy(ctx, plan, progressFile);
    if (!copy) {
      // Before the first release there is no release stack, and a preview must not make one
      // (it would change the state backend): every step of the program would be created.
      steps.push(...firstReleaseSteps(plan));
    } else {
      try {
        await previewSteps(copy.stack, steps);
      } finally {
        fs.rmSync(copy.dir, { recursive: true, force: true });
      }
    }
    const imageStep = steps.find((s) => s.resource === "BakedImage");
    const templateStep = steps.find((s) => s.resource === "LaunchTemplateRelease");
    const summary: PreviewSummary = {
      environment: ctx.name,
      versionFrom: latest.version,
      versionTo: req.version,
      steps,
      image: !plan.image.enabled
        ? "not baked (--skip-image or image.enabled=false)"
        : imageStep && imageStep.op !== "same"
          ? `a new image for ${req.version} (now ${latest.imageId ?? "the base image"})`
          : "unchanged",
      imageParameter:
        !plan.image.enabled || !templateStep || templateStep.op === "same"
          ? `unchanged: ${boots}`
          : `${boots} → the ${req.version} image`,
    };
    void out;
    return summary;
  } finally {
    fs.rmSync(progressFile, { force: true });
  }
}

export function formatPreview(p: PreviewSummary): string {
  return [
    `preview of ${p.environment}: version ${p.versionFrom ?? "(none)"} → ${p.versionTo}`,
    table(
      ["step", "operation", "changed inputs"],
      p.steps.map((s) => [s.resource, s.op, s.changed.join(", ") || "-"]),
    ),
    `image            ${p.image}`,
    `new instances    ${p.imageParameter}`,
  ].join("\n");
}

// ---------------------------------------------------------------- status and history

export interface StatusSummary {
  environment: string;
  latest: { version: string; sha256: string; imageId?: string; releasedAt: string; previous?: string } | null;
  /** The launch template; its image resolves from `imageParameter` at each launch. */
  launchTemplate: { id: string };
  /** What new instances launch: the parameter's version and the AMI it names. */
  imageParameter: { name: string; version: number; imageId: string };
  instances: { instanceId: string; version: string; source: string }[];
  /** The environment's load balancer, when zcp runs it (the local environment). */
  loadBalancer?: { url: string };
}

export async function status(ctx: EnvironmentContext): Promise<StatusSummary> {
  await checkAccount(ctx);
  const clients = createAwsClients({ region: ctx.outputs.region });
  try {
    const read = await readLatestPointer(clients.s3, ctx.outputs.bucket, ctx.outputs.app);
    const parameter = await readImageParameter(clients.ssm, ctx.outputs.imageParameterName);
    const fleet = await discoverFleet(clients, {
      app: ctx.outputs.app,
      env: ctx.name,
      ...(ctx.outputs.autoScalingGroupName ? { autoScalingGroupName: ctx.outputs.autoScalingGroupName } : {}),
    });
    const versions = await ctx.instanceVersions(fleet.map((f) => f.instanceId));
    return {
      environment: ctx.name,
      latest: read
        ? {
            version: read.pointer.version,
            sha256: read.pointer.sha256,
            releasedAt: read.pointer.releasedAt,
            ...(read.pointer.imageId ? { imageId: read.pointer.imageId } : {}),
            ...(read.pointer.previous ? { previous: read.pointer.previous } : {}),
          }
        : null,
      launchTemplate: { id: ctx.outputs.launchTemplateId },
      imageParameter: { name: ctx.outputs.imageParameterName, version: parameter?.version ?? 0, imageId: parameter?.imageId ?? "" },
      instances: fleet.map((f) => ({ instanceId: f.instanceId, ...(versions.get(f.instanceId) ?? { version: "unknown", source: "-" }) })),
      ...(ctx.loadBalancerUrl ? { loadBalancer: { url: ctx.loadBalancerUrl } } : {}),
    };
  } finally {
    destroyAwsClients(clients);
  }
}

export function formatStatus(s: StatusSummary): string {
  return [
    `environment ${s.environment}`,
    `latest      ${s.latest ? `${s.latest.version} (released ${s.latest.releasedAt}, previous ${s.latest.previous ?? "none"})` : "(none)"}`,
    `image       ${s.latest?.imageId ?? "(none)"}`,
    `boots       ${s.imageParameter.imageId || "(no image)"} (${s.imageParameter.name} version ${s.imageParameter.version})`,
    `template    ${s.launchTemplate.id} (image resolve:ssm:${s.imageParameter.name})`,
    ...(s.loadBalancer ? [`traffic     ${s.loadBalancer.url} (HAProxy)`] : []),
    table(
      ["instance", "version", "from"],
      s.instances.map((i) => [i.instanceId, i.version, i.source]),
    ),
  ].join("\n");
}

export interface HistoryEntry {
  update: number;
  kind: string;
  message: string;
  result: string;
  startTime: string;
  durationS: number;
  changes: Record<string, number>;
}

export async function history(ctx: EnvironmentContext): Promise<HistoryEntry[]> {
  if (ctx.fileBackendDir && !fs.existsSync(path.join(ctx.fileBackendDir, ".pulumi"))) return [];
  const stack = await openStack(ctx, undefined, path.join(os.tmpdir(), "zcp-unused-progress"));
  let entries: UpdateSummary[];
  try {
    entries = await stack.history();
  } catch (err) {
    throw classifyEngineError(err, { environment: ctx.name });
  }
  // Newest first; file backends leave the update number unset, so count it here.
  return entries.map((h, i) => ({
    update: h.version || entries.length - i,
    kind: h.kind,
    message: h.message ?? "",
    result: h.result,
    startTime: new Date(h.startTime).toISOString(),
    durationS: h.endTime ? Math.round((new Date(h.endTime).getTime() - new Date(h.startTime).getTime()) / 1000) : 0,
    changes: (h.resourceChanges ?? {}) as Record<string, number>,
  }));
}

export function formatHistory(env: string, h: readonly HistoryEntry[]): string {
  if (h.length === 0) return `no releases of ${env} yet`;
  return table(
    ["#", "what", "result", "started", "took", "changes"],
    h.map((e) => [
      String(e.update),
      e.message || e.kind,
      e.result,
      e.startTime.replace("T", " ").replace(/\.\d+Z$/, "Z"),
      `${e.durationS}s`,
      Object.entries(e.changes)
        .filter(([k]) => k !== "same")
        .map(([k, v]) => `${k} ${v}`)
        .join(", ") || "-",
    ]),
  );
}
