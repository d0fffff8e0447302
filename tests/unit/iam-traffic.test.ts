/**
 * The release role's traffic-control rights (the Fleet's zcp-traffic policy, next to the
 * role's own policy), evaluated by an IAM policy engine: standby in its own group, targets of
 * its own target groups, the states of its own alarms, and nothing that would let a release
 * (or a workflow holding its session) resize the fleet, change a load balancer or silence an
 * alarm gate.
 */
import { expect } from "chai";
import type * as FleetModule from "../../infra/fleet.js";
import type * as RolesModule from "../../infra/roles.js";
import { trafficReleasePolicy } from "../../shared/policy.js";
import { ACCOUNT, REGION, fleetArgs, rolesArgs } from "../fixtures/infra/components.js";
import { type MockRecorder, registered, useMocks } from "../helpers/pulumi-mocks.js";
import { decide } from "./support/iam-engine.js";

const GROUP_ID = "6a8f3f7e-0b7f-4f4e-9c1a-1f2e3d4c5b6a";
const ARN = {
  group: (name: string) => `arn:aws:autoscaling:${REGION}:${ACCOUNT}:autoScalingGroup:${GROUP_ID}:autoScalingGroupName/${name}`,
  targetGroup: (name: string, id = "0123456789abcdef") => `arn:aws:elasticloadbalancing:${REGION}:${ACCOUNT}:targetgroup/${name}/${id}`,
  alarm: (name: string) => `arn:aws:cloudwatch:${REGION}:${ACCOUNT}:alarm:${name}`,
};
const OWN_TG = ARN.targetGroup("web-dev");
const ALARMS = ["web-dev-5xx", "web-dev-latency"];

interface Case {
  name: string;
  action: string;
  resource: string;
}

describe("release role traffic-control permissions under an IAM engine", () => {
  let mocks: MockRecorder;
  /** Identity policies of the release role, per fleet setup. */
  const policies: Record<"standby" | "targetGroup" | "none", object[]> = { standby: [], targetGroup: [], none: [] };

  before(async () => {
    mocks = await useMocks();
    const { Roles } = (await import("../../infra/roles.js")) as typeof RolesModule;
    const { Fleet } = (await import("../../infra/fleet.js")) as typeof FleetModule;
    const roles = new Roles("trafficperm", rolesArgs());
    const group = { create: { minSize: 2, maxSize: 4, desiredCapacity: 2, subnetIds: ["subnet-0aaaaaaaaaaaaaaa1"] } };
    const standby = new Fleet("trafficperm-standby", {
      ...fleetArgs(),
      releaseRoleName: roles.releaseRoleName,
      autoScaling: group,
      traffic: { standby: true, targetGroupArns: [], alarmNames: ALARMS },
    });
    const direct = new Fleet("trafficperm-direct", {
      ...fleetArgs(),
      releaseRoleName: roles.releaseRoleName,
      traffic: { standby: false, targetGroupArns: [OWN_TG], alarmNames: [] },
    });
    const none = new Fleet("trafficperm-none", { ...fleetArgs(), releaseRoleName: roles.releaseRoleName, autoScaling: group });
    await registered(roles.releasePolicy, standby.releaseTrafficPolicy, direct.releaseTrafficPolicy, none.releaseImagePolicy);
    expect(none.releaseTrafficPolicy, "no traffic control configured: no traffic rights").to.equal(undefined);
    const byName = (name: string) =>
      mocks.resources.filter((r) => r.type === "aws:iam/rolePolicy:RolePolicy" && r.name === name).map((r) => JSON.parse(r.inputs["policy"] as string) as object);
    const own = byName("trafficperm-release-policy");
    expect(own).to.have.length(1);
    policies.standby = [...own, ...byName("trafficperm-standby-release-traffic-policy")];
    policies.targetGroup = [...own, ...byName("trafficperm-direct-release-traffic-policy")];
    policies.none = own;
    expect(policies.standby).to.have.length(2);
    expect(policies.targetGroup).to.have.length(2);
  });

  function check(setup: keyof typeof policies, c: Case) {
    return decide({
      principal: `arn:aws:sts::${ACCOUNT}:assumed-role/zcp-web-dev-release/session`,
      action: c.action,
      resource: c.resource,
      resourceAccount: ACCOUNT,
      identityPolicies: policies[setup],
    });
  }

  function matrix(setup: keyof typeof policies, allowed: Case[], denied: Case[]) {
    describe(`release role with ${setup} traffic control`, () => {
      for (const c of allowed) {
        it(`may ${c.name} (${c.action})`, () => expect(check(setup, c), c.resource).to.equal("Allowed"));
      }
      for (const c of denied) {
        it(`may not ${c.name} (${c.action})`, () => expect(check(setup, c), c.resource).to.not.equal("Allowed"));
      }
    });
  }

  matrix(
    "standby",
    [
      { name: "put its own group's instances in standby", action: "autoscaling:EnterStandby", resource: ARN.group("zcp-web-dev") },
      { name: "bring them back", action: "autoscaling:ExitStandby", resource: ARN.group("zcp-web-dev") },
      { name: "read lifecycle states", action: "autoscaling:DescribeAutoScalingInstances", resource: "*" },
      { name: "read target health", action: "elasticloadbalancing:DescribeTargetHealth", resource: "*" },
      { name: "read the deregistration delay", action: "elasticloadbalancing:DescribeTargetGroupAttributes", resource: "*" },
      { name: "read its alarms", action: "cloudwatch:DescribeAlarms", resource: ARN.alarm("web-dev-5xx") },
      { name: "read its other alarm", action: "cloudwatch:DescribeAlarms", resource: ARN.alarm("web-dev-latency") },
    ],
    [
      { name: "put prod's group in standby", action: "autoscaling:EnterStandby", resource: ARN.group("zcp-web-prod") },
      { name: "put a group sharing the name prefix in standby", action: "autoscaling:EnterStandby", resource: ARN.group("zcp-web-dev-evil") },
      { name: "put another app's group in standby", action: "autoscaling:ExitStandby", resource: ARN.group("zcp-api-dev") },
      { name: "resize its group", action: "autoscaling:SetDesiredCapacity", resource: ARN.group("zcp-web-dev") },
      { name: "reconfigure its group", action: "autoscaling:UpdateAutoScalingGroup", resource: ARN.group("zcp-web-dev") },
      { name: "terminate its instances", action: "autoscaling:TerminateInstanceInAutoScalingGroup", resource: ARN.group("zcp-web-dev") },
      { name: "detach instances", action: "autoscaling:DetachInstances", resource: ARN.group("zcp-web-dev") },
      { name: "deregister targets directly", action: "elasticloadbalancing:DeregisterTargets", resource: OWN_TG },
      { name: "read another alarm", action: "cloudwatch:DescribeAlarms", resource: ARN.alarm("api-dev-5xx") },
      { name: "silence its alarm gate", action: "cloudwatch:SetAlarmState", resource: ARN.alarm("web-dev-5xx") },
      { name: "disable its alarm's actions", action: "cloudwatch:DisableAlarmActions", resource: ARN.alarm("web-dev-5xx") },
      { name: "rewrite its alarm", action: "cloudwatch:PutMetricAlarm", resource: ARN.alarm("web-dev-5xx") },
      { name: "delete its alarm", action: "cloudwatch:DeleteAlarms", resource: ARN.alarm("web-dev-5xx") },
    ],
  );

  matrix(
    "targetGroup",
    [
      { name: "deregister from its target group", action: "elasticloadbalancing:DeregisterTargets", resource: OWN_TG },
      { name: "register with its target group", action: "elasticloadbalancing:RegisterTargets", resource: OWN_TG },
      { name: "read the deregistration delay", action: "elasticloadbalancing:DescribeTargetGroupAttributes", resource: "*" },
    ],
    [
      { name: "deregister from another target group", action: "elasticloadbalancing:DeregisterTargets", resource: ARN.targetGroup("web-prod", "fedcba9876543210") },
      { name: "register into another target group", action: "elasticloadbalancing:RegisterTargets", resource: ARN.targetGroup("api-dev", "00112233445566ff") },
      { name: "change its target group", action: "elasticloadbalancing:ModifyTargetGroupAttributes", resource: OWN_TG },
      { name: "delete its target group", action: "elasticloadbalancing:DeleteTargetGroup", resource: OWN_TG },
      { name: "put instances in standby", action: "autoscaling:EnterStandby", resource: ARN.group("zcp-web-dev") },
      { name: "read alarms it was not given", action: "cloudwatch:DescribeAlarms", resource: ARN.alarm("web-dev-5xx") },
    ],
  );

  matrix(
    "none",
    [],
    [
      { name: "put instances in standby", action: "autoscaling:EnterStandby", resource: ARN.group("zcp-web-dev") },
      { name: "deregister targets", action: "elasticloadbalancing:DeregisterTargets", resource: OWN_TG },
      { name: "read alarms", action: "cloudwatch:DescribeAlarms", resource: ARN.alarm("web-dev-5xx") },
    ],
  );

  it("grants nothing when a release touches no load balancer and no alarm", () => {
    expect(trafficReleasePolicy({ partition: "aws", region: REGION, accountId: ACCOUNT, targetGroupArns: [], alarmNames: [] })).to.equal(undefined);
  });
});
