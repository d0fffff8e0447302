/**
 * Fleet discovery: the filters sent, the ASG intersection and the deterministic order.
 */
import { expect } from "chai";
import { DescribeAutoScalingGroupsCommand } from "@aws-sdk/client-auto-scaling";
import { DescribeInstancesCommand } from "@aws-sdk/client-ec2";
import { mockClient } from "aws-sdk-client-mock";
import { discoverFleet } from "../../deploy/aws/fleet.js";
import { ConfigError } from "../../shared/errors.js";
import { fakeClock, offlineAutoScaling, offlineEc2 } from "../fixtures/aws/clients.js";

function instance(id: string, launched: string, extra: Record<string, unknown> = {}) {
  return {
    InstanceId: id,
    LaunchTime: new Date(launched),
    ImageId: "ami-0base",
    PrivateIpAddress: "10.0.0.1",
    Tags: [
      { Key: "zcp:app", Value: "shop" },
      { Key: "zcp:env", Value: "dev" },
    ],
    ...extra,
  };
}

describe("deploy/aws/fleet", function () {
  const clock = fakeClock();
  const pacing = { sleep: clock.sleep, now: clock.now };

  it("asks EC2 for running instances with the app/env tags and sorts them by launch time, then id", async function () {
    const ec2 = offlineEc2();
    const mock = mockClient(ec2);
    mock
      .on(DescribeInstancesCommand)
      .resolvesOnce({
        Reservations: [{ Instances: [instance("i-0c", "2026-01-02T00:00:00Z"), instance("i-0b", "2026-01-01T00:00:00Z")] }],
        NextToken: "page-2",
      })
      .resolvesOnce({ Reservations: [{ Instances: [instance("i-0a", "2026-01-02T00:00:00Z", { PrivateIpAddress: undefined })] }] });

    const fleet = await discoverFleet({ ec2 }, { app: "shop", env: "dev" }, pacing);

    const inputs = mock.commandCalls(DescribeInstancesCommand).map((c) => c.args[0].input);
    expect(inputs[0]).to.deep.equal({
      Filters: [
        { Name: "tag:zcp:app", Values: ["shop"] },
        { Name: "tag:zcp:env", Values: ["dev"] },
        { Name: "instance-state-name", Values: ["running"] },
      ],
      MaxResults: 1000,
    });
    expect(inputs[1]?.NextToken).to.equal("page-2");
    expect(fleet.map((i) => i.instanceId)).to.deep.equal(["i-0b", "i-0a", "i-0c"]);
    expect(fleet[0]).to.deep.equal({
      instanceId: "i-0b",
      launchTime: new Date("2026-01-01T00:00:00Z"),
      imageId: "ami-0base",
      privateIp: "10.0.0.1",
      tags: { "zcp:app": "shop", "zcp:env": "dev" },
    });
    expect(fleet[1]).to.not.have.property("privateIp");
  });

  it("keeps only the group's InService and Healthy members when an ASG is named", async function () {
    const ec2 = offlineEc2();
    const asg = offlineAutoScaling();
    const ec2Mock = mockClient(ec2);
    const asgMock = mockClient(asg);
    ec2Mock.on(DescribeInstancesCommand).resolves({
      Reservations: [
        {
          Instances: ["i-1", "i-2", "i-3", "i-4", "i-5"].map((id, n) => instance(id, `2026-01-0${n + 1}T00:00:00Z`)),
        },
      ],
    });
    asgMock.on(DescribeAutoScalingGroupsCommand).resolves({
      AutoScalingGroups: [
        {
          AutoScalingGroupName: "shop-dev",
          MinSize: 1,
          MaxSize: 5,
          DesiredCapacity: 4,
          DefaultCooldown: 300,
          AvailabilityZones: ["us-east-1a"],
          HealthCheckType: "ELB",
          CreatedTime: new Date(),
          Instances: [
            { InstanceId: "i-1", LifecycleState: "InService", HealthStatus: "Healthy", AvailabilityZone: "us-east-1a", ProtectedFromScaleIn: false },
            { InstanceId: "i-2", LifecycleState: "Terminating", HealthStatus: "Healthy", AvailabilityZone: "us-east-1a", ProtectedFromScaleIn: false },
            { InstanceId: "i-3", LifecycleState: "InService", HealthStatus: "Unhealthy", AvailabilityZone: "us-east-1a", ProtectedFromScaleIn: false },
            { InstanceId: "i-4", LifecycleState: "InService", HealthStatus: "Healthy", AvailabilityZone: "us-east-1a", ProtectedFromScaleIn: false },
          ],
        },
      ],
    });
    const fleet = await discoverFleet({ ec2, autoScaling: asg }, { app: "shop", env: "dev", autoScalingGroupName: "shop-dev" }, pacing);
    expect(fleet.map((i) => i.instanceId)).to.deep.equal(["i-1", "i-4"]);
    expect(asgMock.commandCalls(DescribeAutoScalingGroupsCommand)[0]?.args[0].input).to.deep.equal({ AutoScalingGroupNames: ["shop-dev"] });
  });

  it("fails with a configuration error naming a group that does not exist", async function () {
    const ec2 = offlineEc2();
    const asg = offlineAutoScaling();
    mockClient(ec2).on(DescribeInstancesCommand).resolves({ Reservations: [] });
    mockClient(asg).on(DescribeAutoScalingGroupsCommand).resolves({ AutoScalingGroups: [] });
    const err = await discoverFleet({ ec2, autoScaling: asg }, { app: "shop", env: "dev", autoScalingGroupName: "nope" }, pacing).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).to.be.instanceOf(ConfigError);
    expect((err as ConfigError).message).to.equal('autoScalingGroupName: no Auto Scaling group named "nope" in this account and region');
  });

  it("wraps an EC2 failure with the step and the app/env", async function () {
    const ec2 = offlineEc2();
    const err = new Error("You are not authorized to perform this operation.");
    err.name = "UnauthorizedOperation";
    mockClient(ec2).on(DescribeInstancesCommand).rejects(err);
    const got = await discoverFleet({ ec2 }, { app: "shop", env: "dev" }, pacing).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(got?.message).to.equal("Fleet discovery of shop/dev failed: UnauthorizedOperation: You are not authorized to perform this operation.");
  });
});
