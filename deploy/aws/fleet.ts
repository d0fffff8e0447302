/**
 * Which instances a release goes to: the running instances tagged with the app and
 * environment, narrowed to an Auto Scaling group's in-service members when one is named.
 */
import {
  DescribeAutoScalingGroupsCommand,
  type AutoScalingClient,
  type DescribeAutoScalingGroupsCommandInput,
} from "@aws-sdk/client-auto-scaling";
import { DescribeInstancesCommand, type DescribeInstancesCommandInput, type EC2Client } from "@aws-sdk/client-ec2";
import { ConfigError } from "../../shared/errors.js";
import { fleetSelector } from "../../shared/tags.js";
import { awsCall, tagRecord, type Pacing } from "./call.js";

export interface FleetInstance {
  instanceId: string;
  launchTime: Date;
  imageId: string;
  privateIp?: string;
  tags: Record<string, string>;
}

export interface FleetQuery {
  app: string;
  env: string;
  /** Keep only this group's InService, Healthy members. @default every tagged running instance */
  autoScalingGroupName?: string;
}

export function buildDescribeFleetInstancesInput(app: string, env: string, nextToken?: string): DescribeInstancesCommandInput {
  return {
    Filters: [
      ...fleetSelector(app, env).map((f) => ({ Name: f.key, Values: f.values })),
      { Name: "instance-state-name", Values: ["running"] },
    ],
    MaxResults: 1000,
    ...(nextToken ? { NextToken: nextToken } : {}),
  };
}

export function buildDescribeAutoScalingGroupInput(name: string): DescribeAutoScalingGroupsCommandInput {
  return { AutoScalingGroupNames: [name] };
}

/**
 * The in-service instances of one app in one environment, oldest first (launch time, then
 * id), so canary choice and batches are the same on every run.
 */
export async function discoverFleet(
  clients: { ec2: EC2Client; autoScaling?: AutoScalingClient },
  query: FleetQuery,
  pacing: Pacing = {},
): Promise<FleetInstance[]> {
  const target = `${query.app}/${query.env}`;
  const found: FleetInstance[] = [];
  let token: string | undefined;
  do {
    const input = buildDescribeFleetInstancesInput(query.app, query.env, token);
    const page = await awsCall("Fleet discovery of", target, () => clients.ec2.send(new DescribeInstancesCommand(input)), pacing);
    for (const reservation of page.Reservations ?? []) {
      for (const i of reservation.Instances ?? []) {
        if (!i.InstanceId) continue;
        found.push({
          instanceId: i.InstanceId,
          launchTime: i.LaunchTime ? new Date(i.LaunchTime) : new Date(0),
          imageId: i.ImageId ?? "",
          ...(i.PrivateIpAddress ? { privateIp: i.PrivateIpAddress } : {}),
          tags: tagRecord(i.Tags),
        });
      }
    }
    token = page.NextToken || undefined;
  } while (token);

  let fleet = found;
  if (query.autoScalingGroupName) {
    const inService = await inServiceMembers(clients.autoScaling, query.autoScalingGroupName, pacing);
    fleet = found.filter((i) => inService.has(i.instanceId));
  }
  return sortFleet(fleet);
}

/**
 * The group's members that are InService and Healthy. An unhealthy member is about to be
 * replaced by the group; deploying to it would only report a failure for a box going away.
 */
async function inServiceMembers(client: AutoScalingClient | undefined, name: string, pacing: Pacing): Promise<Set<string>> {
  if (!client) throw new ConfigError("autoScalingGroupName", `"${name}" was given but no Auto Scaling client was`);
  const out = await awsCall(
    "Fleet discovery of Auto Scaling group",
    name,
    () => client.send(new DescribeAutoScalingGroupsCommand(buildDescribeAutoScalingGroupInput(name))),
    pacing,
  );
  const group = out.AutoScalingGroups?.find((g) => g.AutoScalingGroupName === name);
  if (!group) throw new ConfigError("autoScalingGroupName", `no Auto Scaling group named "${name}" in this account and region`);
  return new Set(
    (group.Instances ?? [])
      .filter((m) => m.LifecycleState === "InService" && (m.HealthStatus ?? "Healthy").toLowerCase() === "healthy" && m.InstanceId)
      .map((m) => m.InstanceId as string),
  );
}

export function sortFleet(instances: readonly FleetInstance[]): FleetInstance[] {
  return [...instances].sort(
    (a, b) => a.launchTime.getTime() - b.launchTime.getTime() || (a.instanceId < b.instanceId ? -1 : a.instanceId > b.instanceId ? 1 : 0),
  );
}
