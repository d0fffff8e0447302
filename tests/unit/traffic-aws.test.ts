/**
 * Traffic control on AWS with mocked ELBv2 and Auto Scaling clients (mocked ELBv2 / Auto
 * Scaling): the exact requests, and the waits the emulator cannot show — a target stays
 * `draining` for the deregistration delay before it is `unused`; an instance entering standby
 * passes through EnteringStandby and is deregistered from the group's target groups; one
 * leaving it passes through Pending and must report `healthy` again.
 */
import { expect } from "chai";
import {
  DescribeAutoScalingGroupsCommand,
  DescribeAutoScalingInstancesCommand,
  EnterStandbyCommand,
  ExitStandbyCommand,
  type LifecycleState,
} from "@aws-sdk/client-auto-scaling";
import { DescribeAlarmsCommand } from "@aws-sdk/client-cloudwatch";
import {
  DeregisterTargetsCommand,
  DescribeTargetGroupAttributesCommand,
  DescribeTargetHealthCommand,
  RegisterTargetsCommand,
  type TargetHealthStateEnum,
} from "@aws-sdk/client-elastic-load-balancing-v2";
import { mockClient } from "aws-sdk-client-mock";
import { createTargetGroupController } from "../../deploy/traffic/target-group.js";
import { createAsgStandbyController } from "../../deploy/traffic/asg-standby.js";
import { buildDescribeAlarmsInput, createAlarmGate } from "../../deploy/traffic/alarm-gate.js";
import { fakeClock, offlineAutoScaling, offlineCloudWatch, offlineElb } from "../fixtures/aws/clients.js";

const TG = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/shop-dev/0123456789abcdef";
const health = (id: string, State: TargetHealthStateEnum) => ({ TargetHealthDescriptions: [{ Target: { Id: id, Port: 8080 }, TargetHealth: { State } }] });
const member = (id: string, LifecycleState: LifecycleState) => ({
  AutoScalingInstances: [{ InstanceId: id, AutoScalingGroupName: "shop-dev", LifecycleState, HealthStatus: "HEALTHY", AvailabilityZone: "us-east-1a", ProtectedFromScaleIn: false }],
});

describe("traffic control on AWS (mocked ELBv2 / Auto Scaling)", function () {
  this.timeout(30_000);
  const clock = fakeClock();
  const pacing = { sleep: clock.sleep, now: clock.now };

  it("target group: deregisters the batch and waits while it is draining, until unused", async function () {
    const elb = offlineElb();
    const mock = mockClient(elb);
    mock.on(DescribeTargetGroupAttributesCommand).resolves({ Attributes: [{ Key: "deregistration_delay.timeout_seconds", Value: "30" }] });
    mock.on(DeregisterTargetsCommand).resolves({});
    mock.on(DescribeTargetHealthCommand).resolvesOnce(health("i-1", "draining")).resolvesOnce(health("i-1", "draining")).resolves(health("i-1", "unused"));
    const traffic = createTargetGroupController(elb, { targetGroupArns: [TG], healthyTimeoutS: 30, pollSeconds: 1 }, pacing);
    await traffic.drain(["i-1"]);
    expect(mock.commandCalls(DeregisterTargetsCommand).map((c) => c.args[0].input)).to.deep.equal([{ TargetGroupArn: TG, Targets: [{ Id: "i-1" }] }]);
    expect(mock.commandCalls(DescribeTargetHealthCommand)).to.have.length(3);
  });

  it("target group: registers the batch and waits until healthy", async function () {
    const elb = offlineElb();
    const mock = mockClient(elb);
    mock.on(RegisterTargetsCommand).resolves({});
    mock.on(DescribeTargetHealthCommand).resolvesOnce(health("i-1", "initial")).resolves(health("i-1", "healthy"));
    const traffic = createTargetGroupController(elb, { targetGroupArns: [TG], healthyTimeoutS: 30, pollSeconds: 1 }, pacing);
    await traffic.restore(["i-1"]);
    expect(mock.commandCalls(RegisterTargetsCommand).map((c) => c.args[0].input)).to.deep.equal([{ TargetGroupArn: TG, Targets: [{ Id: "i-1" }] }]);
    expect(mock.commandCalls(DescribeTargetHealthCommand)).to.have.length(2);
  });

  it("target group: a target that never turns healthy fails the restore, naming the group", async function () {
    const elb = offlineElb();
    const mock = mockClient(elb);
    mock.on(RegisterTargetsCommand).resolves({});
    mock.on(DescribeTargetHealthCommand).resolves(health("i-1", "unhealthy"));
    const traffic = createTargetGroupController(elb, { targetGroupArns: [TG], healthyTimeoutS: 2, pollSeconds: 1 }, pacing);
    let caught: unknown;
    await traffic.restore(["i-1"]).catch((err: unknown) => (caught = err));
    expect(String((caught as Error)?.message)).to.match(/Waiting for i-1 to be healthy in .*targetgroup\/shop-dev/);
  });

  it("standby: EnterStandby with a decremented capacity, EnteringStandby → Standby, then drained from the group's target group", async function () {
    const autoScaling = offlineAutoScaling();
    const elb = offlineElb();
    const asg = mockClient(autoScaling);
    const lb = mockClient(elb);
    asg.on(DescribeAutoScalingGroupsCommand).resolves({
      AutoScalingGroups: [{ AutoScalingGroupName: "shop-dev", TargetGroupARNs: [TG], MinSize: 0, MaxSize: 4, DesiredCapacity: 3, DefaultCooldown: 300, AvailabilityZones: ["us-east-1a"], HealthCheckType: "ELB", CreatedTime: new Date(0) }],
    });
    asg.on(EnterStandbyCommand).resolves({ Activities: [] });
    asg.on(DescribeAutoScalingInstancesCommand).resolvesOnce(member("i-1", "EnteringStandby")).resolves(member("i-1", "Standby"));
    lb.on(DescribeTargetGroupAttributesCommand).resolves({ Attributes: [{ Key: "deregistration_delay.timeout_seconds", Value: "20" }] });
    lb.on(DescribeTargetHealthCommand).resolvesOnce(health("i-1", "draining")).resolves(health("i-1", "unused"));
    const traffic = createAsgStandbyController({ autoScaling, elb }, { autoScalingGroupName: "shop-dev", healthyTimeoutS: 30, pollSeconds: 1, ...pacing }, pacing);
    await traffic.drain(["i-1"]);
    expect(asg.commandCalls(EnterStandbyCommand).map((c) => c.args[0].input)).to.deep.equal([
      { AutoScalingGroupName: "shop-dev", InstanceIds: ["i-1"], ShouldDecrementDesiredCapacity: true },
    ]);
    expect(asg.commandCalls(DescribeAutoScalingInstancesCommand)).to.have.length(2);
    expect(lb.commandCalls(DescribeTargetHealthCommand)).to.have.length(2);
    expect(lb.commandCalls(DeregisterTargetsCommand), "standby deregisters; zcp does not").to.have.length(0);
  });

  it("standby: ExitStandby, Pending → InService, then healthy in the group's target group", async function () {
    const autoScaling = offlineAutoScaling();
    const elb = offlineElb();
    const asg = mockClient(autoScaling);
    const lb = mockClient(elb);
    asg.on(DescribeAutoScalingGroupsCommand).resolves({
      AutoScalingGroups: [{ AutoScalingGroupName: "shop-dev", TargetGroupARNs: [TG], MinSize: 0, MaxSize: 4, DesiredCapacity: 2, DefaultCooldown: 300, AvailabilityZones: ["us-east-1a"], HealthCheckType: "ELB", CreatedTime: new Date(0) }],
    });
    asg.on(ExitStandbyCommand).resolves({ Activities: [] });
    asg.on(DescribeAutoScalingInstancesCommand).resolvesOnce(member("i-1", "Pending")).resolves(member("i-1", "InService"));
    lb.on(DescribeTargetHealthCommand).resolvesOnce(health("i-1", "initial")).resolves(health("i-1", "healthy"));
    const traffic = createAsgStandbyController({ autoScaling, elb }, { autoScalingGroupName: "shop-dev", healthyTimeoutS: 30, pollSeconds: 1, ...pacing }, pacing);
    await traffic.restore(["i-1"]);
    expect(asg.commandCalls(ExitStandbyCommand).map((c) => c.args[0].input)).to.deep.equal([{ AutoScalingGroupName: "shop-dev", InstanceIds: ["i-1"] }]);
    expect(lb.commandCalls(DescribeTargetHealthCommand)).to.have.length(2);
    expect(lb.commandCalls(RegisterTargetsCommand), "ExitStandby registers; zcp does not").to.have.length(0);
  });

  it("alarm gate: asks for metric and composite alarms by name, 100 at most per call", async function () {
    const cw = offlineCloudWatch();
    const mock = mockClient(cw);
    const names = Array.from({ length: 150 }, (_, i) => `shop-dev-${i}`);
    mock.on(DescribeAlarmsCommand).callsFake((input: { AlarmNames: string[] }) => ({
      MetricAlarms: input.AlarmNames.map((AlarmName) => ({ AlarmName, StateValue: AlarmName === "shop-dev-120" ? "ALARM" : "OK", StateReason: "threshold crossed" })),
    }));
    expect(await createAlarmGate(cw, names).check()).to.deep.equal(["alarm shop-dev-120 is in ALARM (threshold crossed)"]);
    expect(mock.commandCalls(DescribeAlarmsCommand).map((c) => c.args[0].input)).to.deep.equal([buildDescribeAlarmsInput(names.slice(0, 100)), buildDescribeAlarmsInput(names.slice(100))]);
    expect(buildDescribeAlarmsInput(["a"])).to.deep.equal({ AlarmNames: ["a"], AlarmTypes: ["MetricAlarm", "CompositeAlarm"], MaxRecords: 100 });
  });
});
