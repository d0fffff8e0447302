/**
 * The rollout algorithm, free of AWS and of the engine so it can be tested directly:
 * canary first, health checked by the agent, a soak, then the rest in batches; at the first
 * failed batch every instance this release switched is rolled back to its previous release.
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
  commandTimeoutS: number;
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
    const outcomes = await deps.transport.runAgent(ids, params, { timeoutS: settings.commandTimeoutS });
    const batchReports = outcomes.map((o) => report(o, batchNo));
    for (const r of batchReports) deps.onInstance?.(r, batches.length);
    reports.push(...batchReports);
    batchAgentMs.push(Math.max(0, ...outcomes.map((o) => o.durationMs)));
    const failed = outcomes.filter((o) => !o.ok);
    if (failed.length > settings.maxErrors) {
      deps.log(`${label} failed on ${failed.map((f) => f.instanceId).join(", ")}; rolling back`);
      const rolledBack = await rollBackSwitched(reports, version, deps);
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
 * Every instance this release moved to the new version goes back to the release it had.
 * Instances whose own agent already rolled back (status rolled_back) need nothing.
 */
async function rollBackSwitched(reports: readonly InstanceReport[], version: string, deps: RolloutDeps): Promise<InstanceReport[]> {
  const switched = reports.filter((r) => r.status === "deployed" && r.previous && r.previous !== version);
  const byPrevious = new Map<string, string[]>();
  const knownSha = new Map<string, string>();
  for (const r of switched) {
    const prev = r.previous as string;
    byPrevious.set(prev, [...(byPrevious.get(prev) ?? []), r.instanceId]);
    if (r.previousSha256) knownSha.set(prev, r.previousSha256);
  }
  const out: InstanceReport[] = [];
  for (const [prev, ids] of byPrevious) {
    deps.log(`rolling back ${ids.join(", ")} to ${prev}`);
    const params = await deps.paramsFor(prev, knownSha.get(prev));
    const outcomes = await deps.transport.runAgent(ids, params, { timeoutS: 600 });
    for (const o of outcomes) {
      out.push({ ...report(o, 0), status: o.ok ? "reverted" : `revert_${o.status}`, message: `rolled back to ${prev}: ${o.message}` });
    }
  }
  return out;
}
