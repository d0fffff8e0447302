import { expect } from "chai";
import type * as FleetModule from "../../infra/fleet.js";
import { buildConvergeScript } from "../../infra/user-data.js";
import { ACCOUNT, REGION, TAGS, fleetArgs } from "../fixtures/infra/components.js";
import * as pulumi from "@pulumi/pulumi";
import { type MockRecorder, mockLaunchTemplateId, optionsRecorder, parentTypeOf, registered, useMocks, valueOf } from "../helpers/pulumi-mocks.js";

const TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate";
const GROUP = "aws:autoscaling/group:Group";
const TARGET_GROUP = "aws:lb/targetGroup:TargetGroup";
const ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy";
const PARAMETER = "aws:ssm/parameter:Parameter";
const INSTANCE_TAGS = { "zcp:app": "web", "zcp:env": "dev", "zcp:managed-by": "zcp", Name: "web-dev" };

describe("infra: Fleet", () => {
  let mocks: MockRecorder;
  let mod: typeof FleetModule;
  before(async () => {
    mocks = await useMocks();
    mod = await import("../../infra/fleet.js");
  });

  async function build(name: string, autoScaling?: FleetModule.FleetArgs["autoScaling"]) {
    const { transformation, records } = optionsRecorder();
    const c = new mod.Fleet(name, { ...fleetArgs(), previewRoleName: "zcp-web-dev-preview", ...(autoScaling ? { autoScaling } : {}) }, { transformations: [transformation] });
    const urns = await registered(c.launchTemplate, c.imageParameter, c.releaseImagePolicy, c.previewImagePolicy, c.targetGroup, c.autoScalingGroup);
    return { c, urns, records, templateId: await valueOf(c.launchTemplateId) };
  }

  it("creates a launch template that requires IMDSv2, uses the instance profile and tags instances", async () => {
    const { urns } = await build("f1");
    for (const urn of urns) expect(parentTypeOf(urn), urn).to.equal("zcp:infra:Fleet");
    const lt = mocks.get(TEMPLATE, "f1-template").inputs;
    expect(lt).to.deep.include({
      name: "zcp-web-dev",
      // Resolved at each launch: the release moves the parameter, never the template.
      imageId: "resolve:ssm:/zcp/web/dev/image-id",
      instanceType: "t3.small",
      vpcSecurityGroupIds: ["sg-0aaaaaaaaaaaaaaa1"],
      updateDefaultVersion: true,
      tags: TAGS,
    });
    expect(lt["metadataOptions"]).to.deep.equal({ httpEndpoint: "enabled", httpTokens: "required", httpPutResponseHopLimit: 1 });
    expect(lt["iamInstanceProfile"]).to.deep.equal({ name: "zcp-web-dev-instance" });
    expect(lt["tagSpecifications"]).to.deep.equal([
      { resourceType: "instance", tags: INSTANCE_TAGS },
      { resourceType: "volume", tags: INSTANCE_TAGS },
    ]);
  });

  it("boots instances with user data that converges them to latest.json", async () => {
    await build("f2");
    const userData = Buffer.from(mocks.get(TEMPLATE, "f2-template").inputs["userData"] as string, "base64").toString("utf8");
    const { bucketName, ...boot } = fleetArgs().boot;
    expect(userData).to.equal(buildConvergeScript({ ...boot, app: "web", environment: "dev", region: REGION, bucket: bucketName }));
    expect(userData).to.contain("LATEST_KEY='releases/web/latest.json'");
  });

  it("creates the image parameter with the base AMI, as an aws:ec2:image, and leaves its value to releases", async () => {
    const { records, c } = await build("f3");
    const parameter = mocks.get(PARAMETER, "f3-image").inputs;
    expect(parameter).to.deep.include({ name: "/zcp/web/dev/image-id", type: "String", dataType: "aws:ec2:image", insecureValue: "ami-0aaaaaaaaaaaaaaa1", tags: TAGS });
    expect(await valueOf(c.imageParameterName)).to.equal("/zcp/web/dev/image-id");
    expect(records.find((r) => r.name === "f3-image")!.opts.ignoreChanges).to.include.members(["insecureValue", "value"]);
    // The template's image is fixed now (the parameter); its default version may still have
    // been moved by releases from before the parameter existed.
    const templateOpts = records.find((r) => r.name === "f3-template")!.opts;
    expect(templateOpts.ignoreChanges).to.include.members(["defaultVersion", "latestVersion"]);
    expect(templateOpts.ignoreChanges).to.not.include("imageId");
  });

  it("grants the release role the image parameter only (no launch-template right), and the preview role a read of it", async () => {
    await build("f4");
    const grant = mocks.get(ROLE_POLICY, "f4-release-image-policy").inputs;
    expect(grant["role"]).to.equal("zcp-web-dev-release");
    expect(JSON.parse(grant["policy"] as string)).to.deep.equal({
      Version: "2012-10-17",
      Statement: [
        {
          Sid: "ReleaseImageParameter",
          Effect: "Allow",
          Action: ["ssm:PutParameter", "ssm:GetParameter", "ssm:GetParameterHistory"],
          Resource: `arn:aws:ssm:${REGION}:${ACCOUNT}:parameter/zcp/web/dev/image-id`,
        },
      ],
    });
    const read = mocks.get(ROLE_POLICY, "f4-preview-image-policy").inputs;
    expect(read["role"]).to.equal("zcp-web-dev-preview");
    expect(JSON.parse(read["policy"] as string).Statement).to.deep.equal([
      { Sid: "ReadImageParameter", Effect: "Allow", Action: ["ssm:GetParameter"], Resource: `arn:aws:ssm:${REGION}:${ACCOUNT}:parameter/zcp/web/dev/image-id` },
    ]);
  });

  it("creates an Auto Scaling Group on the default template version, tags propagated at launch", async () => {
    const { c, records, templateId } = await build("f5", {
      create: { minSize: 1, maxSize: 3, desiredCapacity: 2, subnetIds: ["subnet-0aaaaaaaaaaaaaaa1", "subnet-0aaaaaaaaaaaaaaa2"] },
    });
    const asg = mocks.get(GROUP, "f5-asg").inputs;
    expect(asg).to.deep.include({
      name: "zcp-web-dev",
      minSize: 1,
      maxSize: 3,
      desiredCapacity: 2,
      vpcZoneIdentifiers: ["subnet-0aaaaaaaaaaaaaaa1", "subnet-0aaaaaaaaaaaaaaa2"],
      healthCheckType: "EC2",
    });
    expect(asg["launchTemplate"]).to.deep.equal({ id: templateId, version: "$Default" });
    expect(asg["tags"]).to.deep.include.members([
      { key: "zcp:app", value: "web", propagateAtLaunch: true },
      { key: "zcp:env", value: "dev", propagateAtLaunch: true },
    ]);
    expect(records.find((r) => r.name === "f5-asg")!.opts.ignoreChanges).to.deep.equal(["desiredCapacity"]);
    expect(await valueOf(c.autoScalingGroupName!)).to.equal("zcp-web-dev");
    expect(mocks.named("f5").map((r) => r.type)).to.not.include(TARGET_GROUP);
  });

  it("adds a target group and ELB health checks when asked", async () => {
    const { c } = await build("f6", {
      create: {
        minSize: 2,
        maxSize: 4,
        desiredCapacity: 2,
        subnetIds: ["subnet-0aaaaaaaaaaaaaaa1"],
        targetGroup: { vpcId: "vpc-0aaaaaaaaaaaaaaa1", port: 8080, healthCheckPath: "/health" },
      },
    });
    const tg = mocks.get(TARGET_GROUP, "f6-tg").inputs;
    expect(tg).to.deep.include({ vpcId: "vpc-0aaaaaaaaaaaaaaa1", port: 8080, protocol: "HTTP", targetType: "instance" });
    expect(tg["healthCheck"]).to.deep.include({ path: "/health" });
    const asg = mocks.get(GROUP, "f6-asg").inputs;
    expect(asg["targetGroupArns"]).to.deep.equal([await valueOf(c.targetGroup!.arn)]);
    expect(asg["healthCheckType"]).to.equal("ELB");
  });

  describe("adopting an existing group", () => {
    const LOOKUP = "aws:autoscaling/getGroup:getGroup";
    const warnings: string[] = [];
    let warn: typeof pulumi.log.warn;
    beforeEach(() => {
      warnings.length = 0;
      warn = pulumi.log.warn;
      pulumi.log.warn = async (message: string) => void warnings.push(message);
    });
    afterEach(() => {
      pulumi.log.warn = warn;
    });

    it("reads it by name without managing it, and warns when it does not launch from the template", async () => {
      const before = mocks.calls.length;
      const { c } = await build("f7", { existingName: "legacy-web-asg" });
      expect(await valueOf(c.autoScalingGroupName!)).to.equal("legacy-web-asg");
      expect(mocks.named("f7").map((r) => r.type)).to.not.include(GROUP);
      expect(mocks.calls.slice(before).map((call) => [call.token, call.inputs])).to.deep.include([LOOKUP, { name: "legacy-web-asg" }]);
      expect(warnings).to.have.length(1);
      expect(warnings[0]).to.contain("legacy-web-asg does not launch from launch template");
    });

    it("stays quiet when the group launches from the template", async () => {
      const original = mocks.callHandlers.get(LOOKUP)!;
      mocks.callHandlers.set(LOOKUP, (inputs) => ({ ...original(inputs), launchTemplates: [{ id: mockLaunchTemplateId("f9-template"), version: "$Default" }] }));
      try {
        const { c } = await build("f9", { existingName: "web-asg" });
        expect(await valueOf(c.autoScalingGroupName!)).to.equal("web-asg");
        expect(warnings).to.deep.equal([]);
      } finally {
        mocks.callHandlers.set(LOOKUP, original);
      }
    });
  });

  it("has no group name without a group", async () => {
    const { c } = await build("f8");
    expect(c.autoScalingGroupName).to.equal(undefined);
  });
});
