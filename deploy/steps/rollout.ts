/**
 * The rollout algorithm, free of AWS and of the engine so it can be tested directly:
 * canary first, health checked by the agent, a soak, then the rest in batches; at the first
 * failed batch every instance this release may have switched is rolled back to its previous release.
 */
import { ReleaseFailedError } from "../../shared/errors.js";
import { parseBatch } from "../../shared/config.js";
import type { AgentParams, InstanceOutcome, Transport } from "../transport.js";
import type { InstanceReport } from "./types.js";

export interface RolloutSettings {
  canary: number;
  batch: string;
  soakSeconds: number;
  maxErrors: number;
  /** Execution timeout of one instance's run (the document's executionTimeout). */
  commandTimeoutS: number;
  /** How long SSM may try to deliver a command (SendCommand TimeoutSeconds). @default commandTimeoutS */
  deliveryTimeoutS?: number;
  /**
   * The release the fleet served before this one (the latest pointer), used to roll back an
   * instance whose own previous release is unknown (it timed out or its status was lost).
   */
  previousRelease?: string;
}

export interface RolloutDeps {
  transport: Transport;
  /**
   * Parameters for deploying `version` (artifact location and checksum resolved). For a
   * rollback, `knownSha256` is the checksum the instances verified that release against, used
   * when the artifact is no longer in the bucket: the agent then reuses its local copy.
   */
  paramsFor(version: string, knownSha256?: string): Promise<AgentParams>;
  sleep(ms: number): Promise<void>;
  now(): number;
  log(message: string): void;
  onInstance?(report: InstanceReport, batches: number): void;
  /**
   * The first batch (the canary, when there is one) is healthy and has soaked: `instanceId`
   * runs the new version and may be imaged while the remaining batches roll. Called once,
   * before the second batch starts; the rollout does not wait for what it starts.
   */
  onCanaryPassed?(instanceId: string): void;
}

export interface RolloutResult {
  instances: InstanceReport[];
  batches: number;
  imageSourceInstanceId: string;
  batchAgentMs: number[];
}

/** Batch size for a spec ("3" or "25%") on a fleet of `fleetSize` instances; never below 1. */
export function batchSize(spec: string, fleetSize: number): number {
  return parseBatch(spec, fleetSize);
}

/** Splits the fleet into [canary, batch, batch, …]. */
export function planBatches(instanceIds: readonly string[], canary: number, spec: string): string[][] {
  const size = batchSize(spec, instanceIds.length);
  const batches: string[][] = [];
  let rest = [...instanceIds];
  if (canary > 0 && rest.length > 0) {
    batches.push(rest.slice(0, canary));
    rest = rest.slice(canary);
  }
  for (let i = 0; i < rest.length; i += size) batches.push(rest.slice(i, i + size));
  return batches;
}

function report(o: InstanceOutcome, batch: number): InstanceReport {
  const previousSha256 = o.result?.previous_sha256;
  return {
    instanceId: o.instanceId,
    batch,
    status: o.status,
    previous: o.result?.previous ?? null,
    ...(typeof previousSha256 === "string" ? { previousSha256 } : {}),
    durationMs: o.durationMs,
    message: o.message,
  };
}

export function formatInstanceTable(rows: readonly InstanceReport[]): string {
  const lines = rows.map(
    (r) =>
      `  ${r.instanceId.padEnd(20)} batch ${String(r.batch).padEnd(2)} ${r.status.padEnd(12)} ` +
      `prev ${String(r.previous ?? "-").padEnd(12)} ${(r.durationMs / 1000).toFixed(1)}s  ${r.message}`,
  );
  return lines.join("\n");
}

export async function rollout(
  instanceIds: readonly string[],
  version: string,
  settings: RolloutSettings,
  deps: RolloutDeps,
): Promise<RolloutResult> {
  if (instanceIds.length === 0) {
    throw new ReleaseFailedError(`no in-service instances found for this environment; nothing was deployed`);
  }
  const batches = planBatches(instanceIds, settings.canary, settings.batch);
  const params = await deps.paramsFor(version);
  const reports: InstanceReport[] = [];
  const batchAgentMs: number[] = [];
  deps.log(`deploying ${version} to ${instanceIds.length} instance(s) in ${batches.length} batch(es)`);

  for (const [index, ids] of batches.entries()) {
    const batchNo = index + 1;
    const label = index === 0 && settings.canary > 0 ? "canary" : `batch ${batchNo}/${batches.length}`;
    deps.log(`${label}: ${ids.join(", ")}`);
    const outcomes = await deps.transport.runAgent(ids, params, {
      timeoutS: settings.commandTimeoutS,
      ...(settings.deliveryTimeoutS !== undefined ? { deliveryTimeoutS: settings.deliveryTimeoutS } : {}),
      // SSM must never stop invocations zcp would still tolerate; zcp judges the batch itself.
      maxErrors: String(settings.maxErrors),
    });
    const batchReports = outcomes.map((o) => report(o, batchNo));
    for (const r of batchReports) deps.onInstance?.(r, batches.length);
    reports.push(...batchReports);
    batchAgentMs.push(Math.max(0, ...outcomes.map((o) => o.durationMs)));
    const failed = outcomes.filter((o) => !o.ok);
    if (failed.length > settings.maxErrors) {
      deps.log(`${label} failed on ${failed.map((f) => f.instanceId).join(", ")}; rolling back`);
      const rolledBack = await rollBackUnconfirmed(reports, version, settings, deps);
      const table = formatInstanceTable([...reports, ...rolledBack]);
      throw new ReleaseFailedError(
        `release ${version} failed in ${label}: ${failed.length} instance(s) unhealthy ` +
          `(max errors ${settings.maxErrors}); every switched instance was rolled back\n${table}`,
      );
    }
    if (index === 0 && settings.canary > 0 && batches.length > 1 && settings.soakSeconds > 0) {
      deps.log(`canary healthy; soaking ${settings.soakSeconds}s before the next batch`);
      await deps.sleep(settings.soakSeconds * 1000);
    }
    if (index === 0) {
      const healthy = batchReports.find((r) => r.status === "deployed" || r.status === "unchanged");
      if (healthy) deps.onCanaryPassed?.(healthy.instanceId);
    }
  }
  const healthy = reports.find((r) => r.status === "deployed" || r.status === "unchanged");
  return {
    instances: reports,
    batches: batches.length,
    imageSourceInstanceId: healthy?.instanceId ?? instanceIds[0] ?? "",
    batchAgentMs,
  };
}

/**
 * Statuses after which an instance is known not to run the new release: its agent rolled back
 * itself, rejected its input or found the lock held (nothing touched), or SSM never delivered
 * the command (Undeliverable, Delivery Timed Out, or zcp found it offline and sent nothing).
 */
const CONFIRMED_UNTOUCHED = new Set(["rolled_back", "rejected", "locked", "undeliverable"]);
const ROLLBACK_LOCK_RETRIES = 5;
const ROLLBACK_LOCK_WAIT_MS = 30_000;

/**
 * Every instance this release may have moved goes back to the release it had: the deployed
 * ones, and every one whose outcome does not confirm it is untouched (timed_out, cancelled,
 * error, failed): SSM's SIGKILL at the execution timeout or a cancel runs no trap, so such an
 * instance may be switched but unverified. The agent reverts an unverified switch first and
 * answers `unchanged` when the instance never moved, so sending it is always safe.
 */
async function rollBackUnconfirmed(
  reports: readonly InstanceReport[],
  version: string,
  settings: RolloutSettings,
  deps: RolloutDeps,
): Promise<InstanceReport[]> {
  const deployed = reports.filter((r) => r.status === "deployed" && r.previous && r.previous !== version);
  const unknown = reports.filter((r) => r.status !== "deployed" && r.status !== "unchanged" && !CONFIRMED_UNTOUCHED.has(r.status));
  const byPrevious = new Map<string, string[]>();
  const knownSha = new Map<string, string>();
  const add = (prev: string, id: string) => byPrevious.set(prev, [...(byPrevious.get(prev) ?? []).filter((x) => x !== id), id]);
  for (const r of deployed) {
    const prev = r.previous as string;
    add(prev, r.instanceId);
    if (r.previousSha256) knownSha.set(prev, r.previousSha256);
  }
  // An instance without a result line names no previous release: use the fleet's.
  const fleetPrevious = settings.previousRelease ?? mostCommon(deployed.map((r) => r.previous as string));
  const out: InstanceReport[] = [];
  for (const r of unknown) {
    const prev = r.previous && r.previous !== version ? r.previous : fleetPrevious;
    if (prev && prev !== version) add(prev, r.instanceId);
    else out.push({ ...r, batch: 0, status: "revert_unknown", message: `not rolled back: the release it ran before ${version} is unknown; check it by hand` });
  }
  for (const [prev, ids] of byPrevious) {
    deps.log(`rolling back ${ids.join(", ")} to ${prev}`);
    const params = await deps.paramsFor(prev, knownSha.get(prev));
    const run = (targets: readonly string[]) =>
      deps.transport.runAgent(targets, params, {
        timeoutS: settings.commandTimeoutS,
        ...(settings.deliveryTimeoutS !== undefined ? { deliveryTimeoutS: settings.deliveryTimeoutS } : {}),
        maxErrors: String(targets.length),
      });
    const outcomes = new Map((await run(ids)).map((o) => [o.instanceId, o]));
    // A run of this release whose status was lost may still hold an instance's lock (a cancel
    // takes effect asynchronously): wait for it to end and try again, a bounded number of times.
    for (let attempt = 1; attempt <= ROLLBACK_LOCK_RETRIES; attempt++) {
      const locked = ids.filter((id) => outcomes.get(id)?.status === "locked");
      if (locked.length === 0) break;
      deps.log(`${locked.join(", ")} still locked by a deploy in flight; retrying the rollback in ${ROLLBACK_LOCK_WAIT_MS / 1000}s (${attempt}/${ROLLBACK_LOCK_RETRIES})`);
      await deps.sleep(ROLLBACK_LOCK_WAIT_MS);
      for (const o of await run(locked)) outcomes.set(o.instanceId, o);
    }
    for (const o of ids.map((id) => outcomes.get(id)).filter((o): o is InstanceOutcome => o !== undefined)) {
      out.push({ ...report(o, 0), status: o.ok ? "reverted" : `revert_${o.status}`, message: `rolled back to ${prev}: ${o.message}` });
    }
  }
  return out;
}

function mostCommon(values: readonly string[]): string | undefined {
  const counts = new Map<string, number>();
  for (const v of values) counts.set(v, (counts.get(v) ?? 0) + 1);
  return [...counts].sort((a, b) => b[1] - a[1])[0]?.[0];
}
