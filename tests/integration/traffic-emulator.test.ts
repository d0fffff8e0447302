/**
 * Traffic control and alarm gates against the AWS emulator (moto on 127.0.0.1): the ELBv2,
 * Auto Scaling and CloudWatch requests deploy/traffic sends, for real.
 *
 * What the emulator does not model, and where that is covered instead:
 * - Deregistration is immediate (no `draining` for the deregistration delay); waiting through
 *   `draining` is covered by the mocked unit tests (traffic-aws.test.ts).
 * - EnterStandby leaves the instance registered with the group's target groups, where AWS
 *   deregisters it (EC2 Auto Scaling user guide, "Temporarily remove instances"); the group
 *   here has no target group, and the standby-plus-target-group wait is covered by the mocked
 *   unit tests.
 */
import { expect } from "chai";
import { CreateAutoScalingGroupCommand, DescribeAutoScalingGroupsCommand } from "@aws-sdk/client-auto-scaling";
import { PutMetricAlarmCommand, SetAlarmStateCommand } from "@aws-sdk/client-cloudwatch";
import { CreateLaunchTemplateCommand, CreateVpcCommand, DescribeImagesCommand, RunInstancesCommand } from "@aws-sdk/client-ec2";
import { CreateTargetGroupCommand, DescribeTargetHealthCommand, ModifyTargetGroupAttributesCommand, RegisterTargetsCommand } from "@aws-sdk/client-elastic-load-balancing-v2";
import { emulatorClients, startEmulator, type Emulator } from "../helpers/emulator.js";
import { destroyAwsClients, type AwsClients } from "../../deploy/aws/clients.js";
import { createTargetGroupController, deregistrationDelayS } from "../../deploy/traffic/target-group.js";
import { createAsgStandbyController, lifecycleStates } from "../../deploy/traffic/asg-standby.js";
import { createAlarmGate } from "../../deploy/traffic/alarm-gate.js";

const instant = { sleep: async () => undefined };

describe("deploy/traffic against the AWS emulator", function () {
  this.timeout(120_000);
  let emu: Emulator;
  let aws: AwsClients;

  before(async function () {
    emu = await startEmulator();
    aws = emulatorClients(emu);
  });
  after(async function () {
    if (aws) destroyAwsClients(aws);
    if (emu) await emu.stop();
  });
  beforeEach(async function () {
    await emu.reset();
  });

  async function baseImage(): Promise<string> {
    const out = await aws.ec2.send(new DescribeImagesCommand({ Owners: ["amazon"] }));
    const id = out.Images?.find((i) => i.ImageId && i.State === "available")?.ImageId;
    if (!id) throw new Error("the emulator offers no base image");
    return id;
  }

  it("target group: drains a batch (DeregisterTargets, then unused), restores it (RegisterTargets, then healthy)", async function () {
    const vpc = await aws.ec2.send(new CreateVpcCommand({ CidrBlock: "10.0.0.0/16" }));
    const tg = await aws.elb.send(
      new CreateTargetGroupCommand({ Name: "shop-dev", Protocol: "HTTP", Port: 8080, VpcId: vpc.Vpc?.VpcId ?? "", TargetType: "instance" }),
    );
    const arn = tg.TargetGroups?.[0]?.TargetGroupArn ?? "";
    await aws.elb.send(new ModifyTargetGroupAttributesCommand({ TargetGroupArn: arn, Attributes: [{ Key: "deregistration_delay.timeout_seconds", Value: "20" }] }));
    const run = await aws.ec2.send(new RunInstancesCommand({ ImageId: await baseImage(), MinCount: 3, MaxCount: 3 }));
    const ids = (run.Instances ?? []).map((i) => i.InstanceId ?? "");
    await aws.elb.send(new RegisterTargetsCommand({ TargetGroupArn: arn, Targets: ids.map((Id) => ({ Id })) }));

    expect(await deregistrationDelayS(aws.elb, arn)).to.equal(20);
    const traffic = createTargetGroupController(aws.elb, { targetGroupArns: [arn], healthyTimeoutS: 30, pollSeconds: 1 }, instant);
    expect(await traffic.healthyCount(ids)).to.equal(3);

    const [first, ...others] = ids as [string, ...string[]];
    await traffic.drain([first]);
    const health = async () =>
      Object.fromEntries(
        ((await aws.elb.send(new DescribeTargetHealthCommand({ TargetGroupArn: arn, Targets: ids.map((Id) => ({ Id })) }))).TargetHealthDescriptions ?? []).map(
          (d) => [d.Target?.Id ?? "", d.TargetHealth?.State ?? ""],
        ),
      );
    const drained = await health();
    expect(drained[first]).to.equal("unused");
    expect(others.map((id) => drained[id])).to.deep.equal(["healthy", "healthy"]);
    expect(await traffic.healthyCount(ids)).to.equal(2);
    expect(await traffic.healthyCount(others)).to.equal(2);

    await traffic.restore([first]);
    expect((await health())[first]).to.equal("healthy");
    expect(await traffic.healthyCount(ids)).to.equal(3);
  });

  it("target group: a group that does not exist fails the drain with the step and the group named", async function () {
    const missing = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/gone/0123456789abcdef";
    const traffic = createTargetGroupController(aws.elb, { targetGroupArns: [missing], healthyTimeoutS: 5, pollSeconds: 1 }, instant);
    let caught: unknown;
    try {
      await traffic.drain(["i-0123456789abcdef0"]);
    } catch (err) {
      caught = err;
    }
    expect(String((caught as Error)?.message)).to.match(/targetgroup\/gone/);
  });

  it("Auto Scaling group: standby and back, with the desired capacity decremented and restored (no replacement launched)", async function () {
    const lt = await aws.ec2.send(new CreateLaunchTemplateCommand({ LaunchTemplateName: "zcp-shop-dev", LaunchTemplateData: { ImageId: await baseImage(), InstanceType: "t3.micro" } }));
    await aws.autoScaling.send(
      new CreateAutoScalingGroupCommand({
        AutoScalingGroupName: "shop-dev",
        LaunchTemplate: { LaunchTemplateId: lt.LaunchTemplate?.LaunchTemplateId ?? "", Version: "$Default" },
        MinSize: 0,
        MaxSize: 4,
        DesiredCapacity: 3,
        AvailabilityZones: ["us-east-1a"],
      }),
    );
    const group = async () => (await aws.autoScaling.send(new DescribeAutoScalingGroupsCommand({ AutoScalingGroupNames: ["shop-dev"] }))).AutoScalingGroups?.[0];
    const ids = ((await group())?.Instances ?? []).map((i) => i.InstanceId ?? "").sort();
    expect(ids).to.have.length(3);
    const traffic = createAsgStandbyController(aws, { autoScalingGroupName: "shop-dev", healthyTimeoutS: 30, pollSeconds: 1, sleep: async () => undefined }, instant);
    expect(await traffic.healthyCount(ids)).to.equal(3);

    const batch = ids.slice(0, 2);
    await traffic.drain(batch);
    const states = await lifecycleStates(aws.autoScaling, "shop-dev", ids);
    expect(batch.map((id) => states.get(id)?.state)).to.deep.equal(["Standby", "Standby"]);
    expect(states.get(ids[2] ?? "")?.state).to.equal("InService");
    const during = await group();
    expect(during?.DesiredCapacity).to.equal(1);
    expect(during?.Instances).to.have.length(3, "no replacement was launched for the instances in standby");
    expect(await traffic.healthyCount(ids)).to.equal(1);

    await traffic.restore(batch);
    const after = await lifecycleStates(aws.autoScaling, "shop-dev", ids);
    expect(ids.map((id) => after.get(id)?.state)).to.deep.equal(["InService", "InService", "InService"]);
    expect((await group())?.DesiredCapacity).to.equal(3);
    expect(await traffic.healthyCount(ids)).to.equal(3);
  });

  it("alarm gate: passes while alarms are OK, stops on one set to ALARM, and on a name that does not exist", async function () {
    for (const name of ["shop-dev-5xx", "shop-dev-latency"]) {
      await aws.cloudWatch.send(
        new PutMetricAlarmCommand({
          AlarmName: name,
          Namespace: "AWS/ApplicationELB",
          MetricName: "HTTPCode_Target_5XX_Count",
          Statistic: "Sum",
          Period: 60,
          EvaluationPeriods: 1,
          Threshold: 1,
          ComparisonOperator: "GreaterThanOrEqualToThreshold",
        }),
      );
      await aws.cloudWatch.send(new SetAlarmStateCommand({ AlarmName: name, StateValue: "OK", StateReason: "test" }));
    }
    const gate = createAlarmGate(aws.cloudWatch, ["shop-dev-5xx", "shop-dev-latency"]);
    expect(await gate.check()).to.deep.equal([]);

    await aws.cloudWatch.send(new SetAlarmStateCommand({ AlarmName: "shop-dev-latency", StateValue: "ALARM", StateReason: "p99 above 2s" }));
    expect(await gate.check()).to.deep.equal(["alarm shop-dev-latency is in ALARM (p99 above 2s)"]);

    await aws.cloudWatch.send(new SetAlarmStateCommand({ AlarmName: "shop-dev-latency", StateValue: "INSUFFICIENT_DATA", StateReason: "no data" }));
    expect(await gate.check()).to.deep.equal([]);

    const misspelt = createAlarmGate(aws.cloudWatch, ["shop-dev-5xx", "shop-dev-latencey"]);
    expect(await misspelt.check()).to.deep.equal(["alarm shop-dev-latencey does not exist"]);
  });
});
