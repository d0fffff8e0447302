/**
 * Traffic control for an Auto Scaling group: EnterStandby before a batch's deploy,
 * ExitStandby after (EC2 Auto Scaling API reference: EnterStandby, ExitStandby,
 * DescribeAutoScalingInstances). The EC2 Auto Scaling user guide, "Temporarily remove
 * instances from your Auto Scaling group", says what standby does and why it is used here:
 *
 *   - the instance is deregistered from the group's load balancers and target groups;
 *   - with ShouldDecrementDesiredCapacity the group launches no replacement, and it runs no
 *     health checks on a standby instance, so a restarting instance is never terminated;
 *   - ExitStandby increments the desired capacity again and registers the instance back.
 *
 * The lifecycle goes InService → EnteringStandby → Standby and Standby → Pending → InService;
 * after each call the controller waits for the end state, then for the group's target groups
 * (DescribeAutoScalingGroups TargetGroupARNs) to report the targets drained or healthy.
 */
import {
  DescribeAutoScalingGroupsCommand,
  DescribeAutoScalingInstancesCommand,
  EnterStandbyCommand,
  ExitStandbyCommand,
  type AutoScalingClient,
  type EnterStandbyCommandInput,
  type ExitStandbyCommandInput,
} from "@aws-sdk/client-auto-scaling";
import type { ElasticLoadBalancingV2Client } from "@aws-sdk/client-elastic-load-balancing-v2";
import { ReleaseFailedError } from "../../shared/errors.js";
import { poll, realSleep } from "../../shared/retry.js";
import { awsCall, awsErrorName, describeIds, isThrottledOrTransient, type Pacing } from "../aws/call.js";
import type { TrafficController } from "./controller.js";
import { deregistrationDelayS, healthyTargets, waitForTargets } from "./target-group.js";

/** DescribeAutoScalingInstances takes at most 50 ids per call (API reference). */
const DESCRIBE_INSTANCES_PAGE = 50;
/** EnterStandby and ExitStandby take at most 20 instance ids per call (API reference). */
const STANDBY_CALL_MAX = 20;

export function buildEnterStandbyInput(group: string, instanceIds: readonly string[]): EnterStandbyCommandInput {
  // Decrement: otherwise the group launches a replacement for every instance in standby.
  return { AutoScalingGroupName: group, InstanceIds: [...instanceIds], ShouldDecrementDesiredCapacity: true };
}

export function buildExitStandbyInput(group: string, instanceIds: readonly string[]): ExitStandbyCommandInput {
  return { AutoScalingGroupName: group, InstanceIds: [...instanceIds] };
}

function chunks<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

/** Lifecycle state (and health) of each instance in the group. */
export async function lifecycleStates(
  autoScaling: AutoScalingClient,
  group: string,
  instanceIds: readonly string[],
  pacing: Pacing = {},
): Promise<Map<string, { state: string; healthy: boolean }>> {
  const out = new Map<string, { state: string; healthy: boolean }>();
  for (const page of chunks(instanceIds, DESCRIBE_INSTANCES_PAGE)) {
    const res = await awsCall(
      "Lifecycle states in Auto Scaling group",
      group,
      () => autoScaling.send(new DescribeAutoScalingInstancesCommand({ InstanceIds: page })),
      pacing,
    );
    for (const i of res.AutoScalingInstances ?? []) {
      if (i.InstanceId && i.AutoScalingGroupName === group) {
        out.set(i.InstanceId, { state: i.LifecycleState ?? "", healthy: (i.HealthStatus ?? "").toUpperCase() === "HEALTHY" });
      }
    }
  }
  return out;
}

export interface AsgStandbyOptions {
  autoScalingGroupName: string;
  healthyTimeoutS: number;
  pollSeconds: number;
  sleep?: (ms: number) => Promise<void>;
  now?: () => number;
}

export function createAsgStandbyController(
  clients: { autoScaling: AutoScalingClient; elb: ElasticLoadBalancingV2Client },
  opts: AsgStandbyOptions,
  pacing: Pacing = {},
): TrafficController {
  const group = opts.autoScalingGroupName;
  const wait = { pollSeconds: opts.pollSeconds };
  let targetGroups: string[] | undefined;
  const groupTargetGroups = async (): Promise<string[]> => {
    if (targetGroups) return targetGroups;
    const res = await awsCall(
      "Target groups of Auto Scaling group",
      group,
      () => clients.autoScaling.send(new DescribeAutoScalingGroupsCommand({ AutoScalingGroupNames: [group] })),
      pacing,
    );
    const found = res.AutoScalingGroups?.find((g) => g.AutoScalingGroupName === group);
    if (!found) throw new ReleaseFailedError(`no Auto Scaling group named "${group}"; nothing was taken out of traffic`);
    targetGroups = found.TargetGroupARNs ?? [];
    return targetGroups;
  };
  const waitForState = async (ids: readonly string[], want: string, timeoutS: number) => {
    await poll(
      async () => {
        let states: Awaited<ReturnType<typeof lifecycleStates>>;
        try {
          states = await lifecycleStates(clients.autoScaling, group, ids, pacing);
        } catch (err) {
          // Throttling the SDK's retries did not absorb: no news this round; poll again.
          if (!isThrottledOrTransient(err)) throw err;
          return { done: false, status: `states not read this round (${awsErrorName(err) ?? "error"})` };
        }
        const notYet = ids.filter((id) => states.get(id)?.state !== want);
        return notYet.length === 0
          ? { done: true, value: undefined }
          : { done: false, status: notYet.map((id) => `${id} ${states.get(id)?.state ?? "not in the group"}`).join(", ") };
      },
      {
        label: `${describeIds(ids)} ${want} in ${group}`,
        maxAttempts: 100_000,
        deadlineMs: timeoutS * 1000,
        initialDelayMs: opts.pollSeconds * 1000,
        maxDelayMs: Math.max(opts.pollSeconds, 15) * 1000,
        sleep: opts.sleep ?? realSleep,
        now: opts.now ?? Date.now,
        ...(pacing.log ? { log: pacing.log } : {}),
      },
    );
  };
  return {
    kind: "asg-standby",
    async healthyCount(ids) {
      const states = await lifecycleStates(clients.autoScaling, group, ids, pacing);
      let healthy = new Set(ids.filter((id) => states.get(id)?.state === "InService" && states.get(id)?.healthy));
      for (const arn of await groupTargetGroups()) {
        const inGroup = await healthyTargets(clients.elb, arn, [...healthy], pacing);
        healthy = new Set([...healthy].filter((id) => inGroup.has(id)));
      }
      return healthy.size;
    },
    async drain(ids) {
      const tgs = await groupTargetGroups();
      const delays = await Promise.all(tgs.map((arn) => deregistrationDelayS(clients.elb, arn, pacing)));
      for (const part of chunks(ids, STANDBY_CALL_MAX)) {
        await awsCall(`EnterStandby of ${describeIds(part)} in`, group, () => clients.autoScaling.send(new EnterStandbyCommand(buildEnterStandbyInput(group, part))), pacing);
      }
      // EnteringStandby lasts while the group deregisters the instance: up to the longest delay.
      await waitForState(ids, "Standby", Math.max(0, ...delays) + 60);
      await Promise.all(tgs.map((arn, i) => waitForTargets("deregistered", clients.elb, arn, ids, (delays[i] ?? 300) + 30, wait)));
    },
    async restore(ids) {
      for (const part of chunks(ids, STANDBY_CALL_MAX)) {
        await awsCall(`ExitStandby of ${describeIds(part)} in`, group, () => clients.autoScaling.send(new ExitStandbyCommand(buildExitStandbyInput(group, part))), pacing);
      }
      await waitForState(ids, "InService", opts.healthyTimeoutS);
      const tgs = await groupTargetGroups();
      await Promise.all(tgs.map((arn) => waitForTargets("healthy", clients.elb, arn, ids, opts.healthyTimeoutS, wait)));
    },
  };
}
