/**
 * The rollout algorithm, free of AWS and of the engine so it can be tested directly:
 * canary first, health checked by the agent, a soak, then the rest in batches; at the first
 * failed batch every instance this release may have switched is rolled back to its previous release.
 *
 * Traffic control (deploy/traffic/) wraps each batch: the batch leaves the load balancer
 * before its deploy (drain) and returns after (restore, healthy there), and never while that
 * would leave fewer healthy in-service instances than minHealthyPercent asks. Alarm gates are
 * checked during the canary soak and after every batch; one in ALARM fails the release, which
 * rolls back like a failed batch.
 */
import { ReleaseFailedError } from "../../shared/errors.js";
import { parseBatch } from "../../shared/config.js";
import type { AgentParams, InstanceOutcome, Transport } from "../transport.js";
import type { InstanceReport } from "./types.js";
import { noTraffic, type TrafficController } from "../traffic/controller.js";
import { noAlarms, type AlarmGate } from "../traffic/alarm-gate.js";

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
  /** Share of the fleet that stays healthy in service while a batch is out of traffic. @default 0 */
  minHealthyPercent?: number;
  /** Seconds to wait for enough healthy instances before taking a batch out. @default 300 */
  healthyWaitS?: number;
  /** Seconds between alarm checks during the canary soak. @default 10 */
  alarmPollSeconds?: number;
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
   * before the second batch starts; the rollout waits until it has started what it starts
   * (not for the image), and fails and rolls back if it throws (the canary may not be imaged).
   */
  onCanaryPassed?(instanceId: string): void | Promise<void>;
  /**
   * The first batch (the canary, when there is one) has reported healthy on the new version:
   * the earliest point an instance runs it healthily. Called once, as soon as the agents have
   * answered; the call runs alongside the batch's return to the load balancer, the alarm gate
   * and the soak, and the next batch waits for it (a refused image preparation fails the
   * canary before the next batch leaves), not for what it starts. A rollback never starts
   * while the call runs: both would act on the canary.
   */
  onCanaryHealthy?(instanceId: string): void | Promise<void>;
  /** Takes batches out of the load balancer and back. @default no load balancer */
  traffic?: TrafficController;
  /** Alarms that stop the release. @default none */
  alarms?: AlarmGate;
}

export interface RolloutResult {
  instances: InstanceReport[];
  batches: number;
  imageSourceInstanceId: string;
  batchAgentMs: number[];
  /** Per batch: how long taking it out of traffic took (the drain). */
  batchDrainMs: number[];
}

/** Batch size for a spec ("3" or "25%") on a fleet of `fleetSize` instances; never below 1. */
export function batchSize(spec: string, fleetSize: number): number {
  return parseBatch(spec, fleetSize);
}

/**
 * How many instances may be out of traffic at once so that `minHealthyPercent` of the fleet
 * stays in service: never below one, as with instance refresh, where a MinHealthyPercentage
 * of 100 replaces one instance at a time (EC2 Auto Scaling API reference, RefreshPreferences).
 */
export function maxOutOfService(fleetSize: number, minHealthyPercent: number): number {
  return Math.max(1, fleetSize - Math.ceil((fleetSize * minHealthyPercent) / 100));
}

/** Splits the fleet into [canary, batch, batch, …], no batch larger than minHealthyPercent allows. */
export function planBatches(instanceIds: readonly string[], canary: number, spec: string, minHealthyPercent = 0): string[][] {
  const cap = maxOutOfService(instanceIds.length, minHealthyPercent);
  const size = Math.min(batchSize(spec, instanceIds.length), cap);
  const batches: string[][] = [];
  let rest = [...instanceIds];
  if (canary > 0 && rest.length > 0) {
    const first = Math.min(canary, cap);
    batches.push(rest.slice(0, first));
    rest = rest.slice(first);
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
    ...(o.result ? { current: typeof o.result.current === "string" ? o.result.current : null } : {}),
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
  const traffic = deps.traffic ?? noTraffic;
  const alarms = deps.alarms ?? noAlarms;
  const minHealthyPercent = settings.minHealthyPercent ?? 0;
  const batches = planBatches(instanceIds, settings.canary, settings.batch, minHealthyPercent);
  const params = await deps.paramsFor(version);
  const reports: InstanceReport[] = [];
  const batchAgentMs: number[] = [];
  const batchDrainMs: number[] = [];
  /** Instances this release took out of traffic and has not put back yet. */
  const outOfTraffic = new Set<string>();
  deps.log(`deploying ${version} to ${instanceIds.length} instance(s) in ${batches.length} batch(es)`);

  /** The canary's onCanaryHealthy call while it runs; settles with what it threw, if anything. */
  let canaryCall: Promise<{ threw: false } | { threw: true; err: unknown }> | undefined;
  const fail = async (label: string, why: string): Promise<never> => {
    await canaryCall;
    deps.log(`${label}: ${why}; rolling back`);
    const rolledBack = await rollBackUnconfirmed(reports, version, settings, deps, {
      traffic,
      outOfTraffic,
      batchLimit: Math.max(1, ...batches.map((b) => b.length)),
    });
    const table = formatInstanceTable([...reports, ...rolledBack]);
    throw new ReleaseFailedError(`release ${version} failed in ${label}: ${why}; every switched instance was rolled back\n${table}`);
  };
  const gate = async (label: string) => {
    const problems = await alarms.check();
    if (problems.length > 0) await fail(label, problems.join("; "));
  };

  for (const [index, ids] of batches.entries()) {
    const batchNo = index + 1;
    const label = index === 0 && settings.canary > 0 ? "canary" : `batch ${batchNo}/${batches.length}`;
    deps.log(`${label}: ${ids.join(", ")}`);
    if (traffic.kind !== "none") {
      const short = await waitForHealthyMinimum(instanceIds, ids, minHealthyPercent, settings.healthyWaitS ?? 300, traffic, deps);
      if (short) await fail(label, short);
      const drainStarted = deps.now();
      for (const id of ids) outOfTraffic.add(id);
      try {
        await traffic.drain(ids);
      } catch (err) {
        await fail(label, `taking ${ids.join(", ")} out of traffic failed: ${(err as Error).message}`);
      }
      batchDrainMs.push(deps.now() - drainStarted);
    }
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
      await fail(label, `${failed.length} instance(s) unhealthy (max errors ${settings.maxErrors}) on ${failed.map((f) => f.instanceId).join(", ")}`);
    }
    const canaryHealthy = index === 0 ? batchReports.find((r) => r.status === "deployed" || r.status === "unchanged") : undefined;
    if (canaryHealthy && deps.onCanaryHealthy) {
      const call = deps.onCanaryHealthy.bind(deps);
      canaryCall = (async () => call(canaryHealthy.instanceId))().then(
        () => ({ threw: false as const }),
        (err: unknown) => ({ threw: true as const, err }),
      );
    }
    if (traffic.kind !== "none") {
      try {
        await traffic.restore(ids);
      } catch (err) {
        await fail(label, `${ids.join(", ")} did not become healthy in the load balancer: ${(err as Error).message}`);
      }
      for (const id of ids) outOfTraffic.delete(id);
    }
    await gate(label);
    if (index === 0 && settings.canary > 0 && batches.length > 1 && settings.soakSeconds > 0) {
      deps.log(`canary healthy; soaking ${settings.soakSeconds}s before the next batch`);
      await soak(settings.soakSeconds, alarms.names.length > 0 ? (settings.alarmPollSeconds ?? 10) : settings.soakSeconds, deps, () => gate(label));
    }
    if (canaryCall) {
      const outcome = await canaryCall;
      canaryCall = undefined;
      if (outcome.threw) await fail(label, outcome.err instanceof Error ? outcome.err.message : String(outcome.err));
    }
    if (canaryHealthy) {
      try {
        await deps.onCanaryPassed?.(canaryHealthy.instanceId);
      } catch (err) {
        await fail(label, err instanceof Error ? err.message : String(err));
      }
    }
  }
  const healthy = reports.find((r) => r.status === "deployed" || r.status === "unchanged");
  return {
    instances: reports,
    batches: batches.length,
    imageSourceInstanceId: healthy?.instanceId ?? instanceIds[0] ?? "",
    batchAgentMs,
    batchDrainMs,
  };
}

/** Sleeps `seconds`, running `check` every `everyS` seconds and at the end. */
async function soak(seconds: number, everyS: number, deps: RolloutDeps, check: () => Promise<void>): Promise<void> {
  const step = Math.max(1, everyS);
  for (let waited = 0; waited < seconds; waited += step) {
    await deps.sleep(Math.min(step, seconds - waited) * 1000);
    await check();
  }
}

/**
 * Waits until taking `batch` out leaves enough healthy instances in service: at least
 * minHealthyPercent of the fleet (or everything but the batch, when the batch is the one
 * instance maxOutOfService always allows). A batch with no healthy instance takes nothing
 * away, so it may always go (a fleet's first release starts with nothing healthy).
 * Returns why it may not, after `waitS`; undefined when it may.
 */
async function waitForHealthyMinimum(
  fleet: readonly string[],
  batch: readonly string[],
  minHealthyPercent: number,
  waitS: number,
  traffic: TrafficController,
  deps: RolloutDeps,
): Promise<string | undefined> {
  if (minHealthyPercent <= 0) return undefined;
  const others = fleet.filter((id) => !batch.includes(id));
  const required = Math.min(Math.ceil((fleet.length * minHealthyPercent) / 100), others.length);
  const deadline = deps.now() + waitS * 1000;
  for (;;) {
    const healthyOthers = await traffic.healthyCount(others);
    if (healthyOthers >= required) return undefined;
    if ((await traffic.healthyCount(batch)) === 0) return undefined;
    if (deps.now() >= deadline) {
      return (
        `only ${healthyOthers} of the ${others.length} other instance(s) are healthy in the load balancer; ` +
        `minHealthyPercent ${minHealthyPercent} needs ${required} while ${batch.join(", ")} ${batch.length === 1 ? "is" : "are"} out`
      );
    }
    deps.log(`waiting for ${required - healthyOthers} more healthy instance(s) before taking ${batch.join(", ")} out of traffic`);
    await deps.sleep(2000);
  }
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
 *
 * With a load balancer, instances go back in batches no larger than the release's, each out
 * of traffic while it restarts; every instance the release took out of traffic is put back
 * at the end.
 */
async function rollBackUnconfirmed(
  reports: readonly InstanceReport[],
  version: string,
  settings: RolloutSettings,
  deps: RolloutDeps,
  lb: { traffic: TrafficController; outOfTraffic: Set<string>; batchLimit: number } = { traffic: noTraffic, outOfTraffic: new Set(), batchLimit: 1 },
): Promise<InstanceReport[]> {
  const deployed = reports.filter((r) => r.status === "deployed" && r.previous && r.previous !== version);
  // An agent that printed its result line said which release is current: one that failed
  // before the switch (a fetch that could not reach the bucket, say) still serves its old
  // release and needs no rollback, which could only fail for the same reason.
  const stillOnOld = (r: InstanceReport) => r.current !== undefined && r.current !== version;
  const unknown = reports.filter(
    (r) => r.status !== "deployed" && r.status !== "unchanged" && !CONFIRMED_UNTOUCHED.has(r.status) && !stillOnOld(r),
  );
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
  const { traffic, outOfTraffic } = lb;
  const bestEffort = async (what: string, fn: () => Promise<void>) => {
    try {
      await fn();
    } catch (err) {
      deps.log(`${what} failed during the rollback: ${(err as Error).message}`);
    }
  };
  const groups: [string, string[]][] = [];
  for (const [prev, all] of byPrevious) {
    const chunk = traffic.kind === "none" ? all.length : lb.batchLimit;
    for (let i = 0; i < all.length; i += chunk) groups.push([prev, all.slice(i, i + chunk)]);
  }
  for (const [prev, ids] of groups) {
    deps.log(`rolling back ${ids.join(", ")} to ${prev}`);
    const params = await deps.paramsFor(prev, knownSha.get(prev));
    const toDrain = ids.filter((id) => !outOfTraffic.has(id));
    if (traffic.kind !== "none" && toDrain.length > 0) {
      for (const id of toDrain) outOfTraffic.add(id);
      await bestEffort(`taking ${toDrain.join(", ")} out of traffic`, () => traffic.drain(toDrain));
    }
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
    if (traffic.kind !== "none") {
      await bestEffort(`putting ${ids.join(", ")} back into traffic`, () => traffic.restore(ids));
      for (const id of ids) outOfTraffic.delete(id);
    }
  }
  if (traffic.kind !== "none" && outOfTraffic.size > 0) {
    const rest = [...outOfTraffic];
    await bestEffort(`putting ${rest.join(", ")} back into traffic`, () => traffic.restore(rest));
    outOfTraffic.clear();
  }
  return out;
}

function mostCommon(values: readonly string[]): string | undefined {
  const counts = new Map<string, number>();
  for (const v of values) counts.set(v, (counts.get(v) ?? 0) + 1);
  return [...counts].sort((a, b) => b[1] - a[1])[0]?.[0];
}
