/**
 * Traffic control for instances registered directly with ELBv2 target groups:
 * DeregisterTargets before a batch's deploy, RegisterTargets after, with the SDK's waiters in
 * between (Elastic Load Balancing API reference: DeregisterTargets, RegisterTargets,
 * DescribeTargetHealth; waiters TargetDeregistered and TargetInService).
 *
 * A deregistered target stays `draining` until its in-flight requests are done or the target
 * group's deregistration delay (`deregistration_delay.timeout_seconds`, 300 s by default)
 * passes, then becomes `unused`; the wait for that is bounded by the group's own delay, read
 * with DescribeTargetGroupAttributes (Elastic Load Balancing user guide, "Deregistration delay").
 */
import {
  DeregisterTargetsCommand,
  DescribeTargetGroupAttributesCommand,
  DescribeTargetHealthCommand,
  RegisterTargetsCommand,
  waitUntilTargetDeregistered,
  waitUntilTargetInService,
  type DeregisterTargetsCommandInput,
  type ElasticLoadBalancingV2Client,
  type RegisterTargetsCommandInput,
} from "@aws-sdk/client-elastic-load-balancing-v2";
import { StepError } from "../../shared/errors.js";
import { awsCall, describeIds, type Pacing } from "../aws/call.js";
import type { TrafficController } from "./controller.js";

/** Headroom over the deregistration delay for the service to flip the target to `unused`. */
const DRAIN_MARGIN_S = 30;
const DEFAULT_DEREGISTRATION_DELAY_S = 300;

export function buildDeregisterTargetsInput(targetGroupArn: string, instanceIds: readonly string[]): DeregisterTargetsCommandInput {
  return { TargetGroupArn: targetGroupArn, Targets: instanceIds.map((Id) => ({ Id })) };
}

export function buildRegisterTargetsInput(targetGroupArn: string, instanceIds: readonly string[]): RegisterTargetsCommandInput {
  return { TargetGroupArn: targetGroupArn, Targets: instanceIds.map((Id) => ({ Id })) };
}

/** The group's deregistration delay in seconds (its attribute, else the documented default). */
export async function deregistrationDelayS(elb: ElasticLoadBalancingV2Client, targetGroupArn: string, pacing: Pacing = {}): Promise<number> {
  const out = await awsCall(
    "Reading the deregistration delay of",
    targetGroupArn,
    () => elb.send(new DescribeTargetGroupAttributesCommand({ TargetGroupArn: targetGroupArn })),
    pacing,
  );
  const raw = out.Attributes?.find((a) => a.Key === "deregistration_delay.timeout_seconds")?.Value;
  const n = Number(raw);
  return raw !== undefined && Number.isFinite(n) && n >= 0 ? n : DEFAULT_DEREGISTRATION_DELAY_S;
}

/** Instances among `instanceIds` that the group reports `healthy`. */
export async function healthyTargets(
  elb: ElasticLoadBalancingV2Client,
  targetGroupArn: string,
  instanceIds: readonly string[],
  pacing: Pacing = {},
): Promise<Set<string>> {
  if (instanceIds.length === 0) return new Set();
  const out = await awsCall(
    "Target health in",
    targetGroupArn,
    () => elb.send(new DescribeTargetHealthCommand({ TargetGroupArn: targetGroupArn, Targets: instanceIds.map((Id) => ({ Id })) })),
    pacing,
  );
  return new Set(
    (out.TargetHealthDescriptions ?? [])
      .filter((d) => d.TargetHealth?.State === "healthy" && d.Target?.Id)
      .map((d) => d.Target?.Id as string),
  );
}

export interface WaitOptions {
  /** Floor of the waiter's backoff, seconds. */
  pollSeconds: number;
}

/** Deregisters the instances and waits until the group stopped routing to them (`unused`). */
export async function deregisterAndDrain(
  elb: ElasticLoadBalancingV2Client,
  targetGroupArn: string,
  instanceIds: readonly string[],
  wait: WaitOptions,
  pacing: Pacing = {},
): Promise<void> {
  const delay = await deregistrationDelayS(elb, targetGroupArn, pacing);
  await awsCall(`Deregistering ${describeIds(instanceIds)} from`, targetGroupArn, () => elb.send(new DeregisterTargetsCommand(buildDeregisterTargetsInput(targetGroupArn, instanceIds))), pacing);
  await waitForTargets("deregistered", elb, targetGroupArn, instanceIds, delay + DRAIN_MARGIN_S, wait);
}

/** Registers the instances and waits until the group reports every one `healthy`. */
export async function registerAndWaitHealthy(
  elb: ElasticLoadBalancingV2Client,
  targetGroupArn: string,
  instanceIds: readonly string[],
  timeoutS: number,
  wait: WaitOptions,
  pacing: Pacing = {},
): Promise<void> {
  await awsCall(`Registering ${describeIds(instanceIds)} with`, targetGroupArn, () => elb.send(new RegisterTargetsCommand(buildRegisterTargetsInput(targetGroupArn, instanceIds))), pacing);
  await waitForTargets("healthy", elb, targetGroupArn, instanceIds, timeoutS, wait);
}

/** The SDK waiter for `deregistered` (all `unused`) or `healthy` (all `healthy`), as one readable error. */
export async function waitForTargets(
  what: "deregistered" | "healthy",
  elb: ElasticLoadBalancingV2Client,
  targetGroupArn: string,
  instanceIds: readonly string[],
  maxWaitS: number,
  wait: WaitOptions,
): Promise<void> {
  const params = { client: elb, maxWaitTime: Math.max(1, maxWaitS), minDelay: wait.pollSeconds, maxDelay: Math.max(wait.pollSeconds, Math.min(15, maxWaitS)) };
  const input = { TargetGroupArn: targetGroupArn, Targets: instanceIds.map((Id) => ({ Id })) };
  try {
    if (what === "deregistered") await waitUntilTargetDeregistered(params, input);
    else await waitUntilTargetInService(params, input);
  } catch (err) {
    throw new StepError(`Waiting for ${describeIds(instanceIds)} to be ${what} in`, targetGroupArn, err);
  }
}

/** Controller for `kind: "target-group"`: every batch leaves and rejoins each named group. */
export function createTargetGroupController(
  elb: ElasticLoadBalancingV2Client,
  spec: { targetGroupArns: readonly string[]; healthyTimeoutS: number; pollSeconds: number },
  pacing: Pacing = {},
): TrafficController {
  const wait = { pollSeconds: spec.pollSeconds };
  return {
    kind: "target-group",
    async healthyCount(ids) {
      let healthy = new Set(ids);
      for (const arn of spec.targetGroupArns) {
        const inGroup = await healthyTargets(elb, arn, ids, pacing);
        healthy = new Set([...healthy].filter((id) => inGroup.has(id)));
      }
      return healthy.size;
    },
    async drain(ids) {
      // Every group at once: the drains overlap instead of adding up.
      await Promise.all(spec.targetGroupArns.map((arn) => deregisterAndDrain(elb, arn, ids, wait, pacing)));
    },
    async restore(ids) {
      await Promise.all(spec.targetGroupArns.map((arn) => registerAndWaitHealthy(elb, arn, ids, spec.healthyTimeoutS, wait, pacing)));
    },
  };
}
