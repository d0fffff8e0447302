/**
 * Instances that joined the fleet while a release ran (an Auto Scaling scale-out, a replaced
 * unhealthy member) were not in FleetDeployment's batches. They booted from the image the
 * launch template named then and converged to the latest.json of then: the previous release.
 * Before the launch template and latest.json move to the new release, the fleet is discovered
 * again, the same way FleetDeployment discovers it, and every newcomer that did not boot from
 * the new release's image gets the release too: the same transport, the same health check,
 * the same rollback and failure as any batch. `latest` never moves while an in-service
 * instance still runs the previous release.
 *
 * LaunchTemplateRelease and LatestPointer each call `catchUpNewcomers` first.
 */
import { ReleaseFailedError } from "../../shared/errors.js";
import { discoverFleet } from "../aws/fleet.js";
import { emitProgress } from "../progress.js";
import { realSleep } from "../../shared/retry.js";
import { alarmGateFor, trafficControllerFor } from "../traffic/select.js";
import { stepLog, stepPacing, withStepClients, type StepEnv } from "./context.js";
import { prepareFleetRun } from "./fleet-deployment.js";
import { rollout } from "./rollout.js";
import type { CatchUpSpec, InstanceReport } from "./types.js";
import type { InstanceOutcome, Transport } from "../transport.js";

const BOOT_CONVERGE_RETRIES = 6;
const BOOT_CONVERGE_WAIT_MS = 30_000;

export interface CatchUpOptions {
  /** The step that asks (for its progress lines and errors). */
  step: string;
  /**
   * The release's own image: an instance booted from it already runs the release (and, by
   * its recorded sequence, never converges to an older pointer). "" when none was baked.
   */
  imageId?: string;
}

/**
 * Deploys the release to in-service instances FleetDeployment did not deploy to. Returns
 * their reports (none when nobody joined); throws ReleaseFailedError, after rolling them
 * back, when they fail as a batch would. `spec` undefined: nothing to do (a plan without it).
 */
export async function catchUpNewcomers(spec: CatchUpSpec | undefined, opts: CatchUpOptions, env: StepEnv = {}): Promise<InstanceReport[]> {
  if (!spec) return [];
  const now = env.now ?? Date.now;
  const sleep = env.sleep ?? realSleep;
  const log = stepLog(opts.step);
  return withStepClients(spec.region, env, async (clients) => {
    const pacing = { ...stepPacing(opts.step), sleep, now };
    const fleet = await discoverFleet(
      clients,
      { app: spec.app, env: spec.environment, ...(spec.autoScalingGroupName ? { autoScalingGroupName: spec.autoScalingGroupName } : {}) },
      pacing,
    );
    const deployed = new Set(spec.deployedInstances.map((i) => i.instanceId));
    const newcomers = fleet.filter((i) => !deployed.has(i.instanceId) && !(opts.imageId && i.imageId === opts.imageId)).map((i) => i.instanceId);
    if (newcomers.length === 0) {
      log(`fleet discovered again: no instance joined it while ${spec.version} rolled out`);
      return [];
    }
    log(`${newcomers.length} instance(s) joined the fleet while ${spec.version} rolled out (${newcomers.join(", ")}); deploying ${spec.version} to them before going on`);
    const run = await prepareFleetRun(spec, clients, env, opts.step);
    try {
      const result = await rollout(
        newcomers,
        spec.version,
        {
          // The release already passed its canary and soak on the fleet.
          canary: 0,
          batch: spec.batch,
          soakSeconds: 0,
          maxErrors: spec.maxErrors,
          commandTimeoutS: spec.commandTimeoutS,
          ...(spec.deliveryTimeoutS !== undefined ? { deliveryTimeoutS: spec.deliveryTimeoutS } : {}),
          minHealthyPercent: spec.minHealthyPercent,
          ...(run.previousRelease !== undefined ? { previousRelease: run.previousRelease } : {}),
        },
        {
          transport: waitingOutBootConverge(run.transport, sleep, log),
          traffic: trafficControllerFor(spec.traffic, clients, stepPacing(opts.step)),
          alarms: alarmGateFor(spec.alarmNames, clients, stepPacing(opts.step)),
          paramsFor: run.paramsFor,
          sleep,
          now,
          log,
          onInstance: (r, batches) =>
            emitProgress({ kind: "instance", step: opts.step, batch: r.batch, batches, instanceId: r.instanceId, status: r.status, message: r.message, durationMs: r.durationMs }),
        },
      );
      return result.instances;
    } catch (err) {
      if (err instanceof ReleaseFailedError) {
        throw new ReleaseFailedError(
          `${opts.step}: ${spec.version} on the instance(s) that joined the fleet during the release (${newcomers.join(", ")}) failed; ` +
            `nothing was moved. ${err.message}`,
          { cause: err },
        );
      }
      throw err;
    } finally {
      run.close();
    }
  });
}

/**
 * A newcomer is often still running its boot converge (user data deploying the release
 * latest.json named at boot) when it is found: an Auto Scaling instance is InService before its
 * user data finishes. The agent's lock serializes the two and answers `locked`; the deploy is
 * sent again once that run had time to end, a bounded number of times, before `locked` counts
 * as the batch's failure.
 */
function waitingOutBootConverge(transport: Transport, sleep: (ms: number) => Promise<void>, log: (m: string) => void): Transport {
  return {
    kind: transport.kind,
    async runAgent(ids, params, opts) {
      const outcomes = new Map<string, InstanceOutcome>((await transport.runAgent(ids, params, opts)).map((o) => [o.instanceId, o]));
      for (let attempt = 1; attempt <= BOOT_CONVERGE_RETRIES; attempt++) {
        const locked = ids.filter((id) => outcomes.get(id)?.status === "locked");
        if (locked.length === 0) break;
        log(`${locked.join(", ")} still busy with another deploy (its boot converge, likely); sending ${params.version} again in ${BOOT_CONVERGE_WAIT_MS / 1000}s (${attempt}/${BOOT_CONVERGE_RETRIES})`);
        await sleep(BOOT_CONVERGE_WAIT_MS);
        for (const o of await transport.runAgent(locked, params, opts)) outcomes.set(o.instanceId, o);
      }
      return ids.map((id) => outcomes.get(id)).filter((o): o is InstanceOutcome => o !== undefined);
    },
  };
}
