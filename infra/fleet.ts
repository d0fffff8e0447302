import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import { imageParameterName, launchTemplateName } from "../shared/naming.js";
import { imageParameterPreviewPolicy, imageParameterReleasePolicy, partitionOf, trafficReleasePolicy } from "../shared/policy.js";
import { TAG_APP, TAG_ENV, baseTags } from "../shared/tags.js";
import { type ConvergeScriptArgs, buildConvergeScript } from "./user-data.js";

/** What user data needs to converge a booted instance (see user-data.ts). */
export type BootArgs = Omit<ConvergeScriptArgs, "app" | "environment" | "region" | "bucket" | "agentKey" | "agentSha256"> & {
  bucketName: pulumi.Input<string>;
  agentKey: string;
  agentSha256: string;
};

export interface CreateGroupArgs {
  minSize: number;
  maxSize: number;
  desiredCapacity: number;
  subnetIds: string[];
  /** Also create a target group and register the group with it. @default none */
  targetGroup?: { vpcId: string; port: number; healthCheckPath: string };
}

export interface FleetArgs {
  app: string;
  environment: string;
  accountId: string;
  region: string;
  /**
   * The base AMI: the image parameter's first value, until the first release writes a baked
   * image into it.
   */
  imageId: string;
  /** @default none (the Auto Scaling Group decides) */
  instanceType?: string;
  /** @default [] (the VPC's default security group) */
  securityGroupIds?: string[];
  instanceProfileName: pulumi.Input<string>;
  /** The release role, which may move this fleet's image parameter (and nothing else of the fleet). */
  releaseRoleName: pulumi.Input<string>;
  /** The preview role, which may read the image parameter. @default none (no grant) */
  previewRoleName?: pulumi.Input<string>;
  boot: BootArgs;
  /** Create an Auto Scaling Group, adopt one by name, or neither. @default neither */
  autoScaling?: { create: CreateGroupArgs } | { existingName: string };
  /** Tags for the template and group resources themselves. @default {} */
  tags?: Record<string, string>;
  /**
   * What releases' traffic control and alarm gates may touch; the release role gets rights
   * on exactly these. @default no standby, no target group, no alarm
   */
  traffic?: {
    /** Releases put the group's instances in standby (the group must exist). */
    standby: boolean;
    /** Target groups releases deregister from and register with directly. */
    targetGroupArns: string[];
    alarmNames: string[];
  };
}

/**
 * The launch template's properties the foundation does not reset. Releases no longer touch
 * the template (they move the image parameter), but a template that releases re-pointed
 * before the image parameter existed has a default and latest version the foundation never
 * made; its next update still makes the foundation's own version the default
 * (`updateDefaultVersion`).
 */
export const RELEASE_MANAGED_TEMPLATE_PROPERTIES = ["defaultVersion", "latestVersion"];

/** The image parameter's value is the release's to move; the foundation only sets the first one. */
export const RELEASE_MANAGED_PARAMETER_PROPERTIES = ["insecureValue", "value"];

/**
 * How the launch template names its image: resolved from the parameter at each launch
 * (EC2 user guide, "Use a Systems Manager parameter instead of an AMI ID"; Amazon EC2 Auto
 * Scaling user guide, "Use AWS Systems Manager parameters instead of AMI IDs in launch
 * templates": the group resolves the parameter each time it launches an instance).
 */
export function resolveImageFrom(parameterName: string): string {
  return `resolve:ssm:${parameterName}`;
}

/**
 * IMDS hop limit 1: only processes on the instance itself reach the metadata service. zcp
 * fleets run the application directly on the host (no containers that would need a second
 * hop), so one hop is enough, and a forwarded request (a container, a misconfigured proxy)
 * cannot obtain the instance role's credentials.
 */
export const IMDS_HOP_LIMIT = 1;

/** The launch template of the app's instances, and optionally its Auto Scaling Group. */
export class Fleet extends pulumi.ComponentResource {
  readonly launchTemplate: aws.ec2.LaunchTemplate;
  /** The AMI new instances boot: the release moves it, the template resolves it at launch. */
  readonly imageParameter: aws.ssm.Parameter;
  readonly releaseImagePolicy: aws.iam.RolePolicy;
  readonly previewImagePolicy?: aws.iam.RolePolicy;
  /** The release role's traffic-control rights, when releases use any. */
  readonly releaseTrafficPolicy?: aws.iam.RolePolicy;
  readonly targetGroup?: aws.lb.TargetGroup;
  readonly autoScalingGroup?: aws.autoscaling.Group;
  readonly launchTemplateId: pulumi.Output<string>;
  readonly imageParameterName: pulumi.Output<string>;
  /** The group's name, when the fleet created or adopted one. */
  readonly autoScalingGroupName?: pulumi.Output<string>;

  constructor(name: string, args: FleetArgs, opts: pulumi.ComponentResourceOptions = {}) {
    super("zcp:infra:Fleet", name, {}, opts);
    const tags = args.tags ?? {};

    this.imageParameter = this.createImageParameter(name, args, tags);
    this.imageParameterName = this.imageParameter.name;
    this.launchTemplate = this.createLaunchTemplate(name, args, tags);
    this.launchTemplateId = this.launchTemplate.id;
    this.releaseImagePolicy = this.grantRelease(name, args);
    const preview = this.grantPreview(name, args);
    if (preview) this.previewImagePolicy = preview;
    const traffic = this.grantTraffic(name, args);
    if (traffic) this.releaseTrafficPolicy = traffic;

    const scaling = args.autoScaling;
    if (scaling && "create" in scaling) {
      if (scaling.create.targetGroup) this.targetGroup = this.createTargetGroup(name, scaling.create.targetGroup, tags);
      this.autoScalingGroup = this.createGroup(name, args, scaling.create);
      this.autoScalingGroupName = this.autoScalingGroup.name;
    } else if (scaling) {
      this.autoScalingGroupName = this.adoptGroup(scaling.existingName);
    }

    this.registerOutputs({
      launchTemplateId: this.launchTemplateId,
      imageParameterName: this.imageParameterName,
      autoScalingGroupName: this.autoScalingGroupName,
    });
  }

  /**
   * `aws:ec2:image` makes SSM check that every value is an AMI id (Systems Manager user guide,
   * "Native parameter support for Amazon Machine Image IDs"), so the parameter can hold
   * nothing but an image.
   */
  private createImageParameter(name: string, args: FleetArgs, tags: Record<string, string>): aws.ssm.Parameter {
    return new aws.ssm.Parameter(
      `${name}-image`,
      {
        name: imageParameterName(args.app, args.environment),
        description: `zcp: the image ${args.app} in ${args.environment} launches (moved by each release)`,
        type: "String",
        dataType: "aws:ec2:image",
        // An AMI id is no secret: `insecureValue` keeps it readable in previews and state.
        insecureValue: args.imageId,
        tags,
      },
      { parent: this, ignoreChanges: RELEASE_MANAGED_PARAMETER_PROPERTIES },
    );
  }

  private createLaunchTemplate(name: string, args: FleetArgs, tags: Record<string, string>): aws.ec2.LaunchTemplate {
    const instanceTags = { ...baseTags(args.app, args.environment), Name: `${args.app}-${args.environment}` };
    const userData = pulumi.output(args.boot.bucketName).apply((bucket) =>
      Buffer.from(
        buildConvergeScript({ ...args.boot, app: args.app, environment: args.environment, region: args.region, bucket }),
        "utf8",
      ).toString("base64"),
    );
    return new aws.ec2.LaunchTemplate(
      `${name}-template`,
      {
        name: launchTemplateName(args.app, args.environment),
        description: `zcp: ${args.app} in ${args.environment}`,
        imageId: this.imageParameter.name.apply(resolveImageFrom),
        ...(args.instanceType ? { instanceType: args.instanceType } : {}),
        ...(args.securityGroupIds?.length ? { vpcSecurityGroupIds: args.securityGroupIds } : {}),
        iamInstanceProfile: { name: args.instanceProfileName },
        metadataOptions: { httpEndpoint: "enabled", httpTokens: "required", httpPutResponseHopLimit: IMDS_HOP_LIMIT },
        userData,
        tagSpecifications: [
          { resourceType: "instance", tags: instanceTags },
          { resourceType: "volume", tags: instanceTags },
        ],
        // A foundation change (user data, profile, type) must reach new instances, so it
        // becomes the default version. Its image is the parameter, so it launches the
        // released image too.
        updateDefaultVersion: true,
        tags,
      },
      { parent: this, ignoreChanges: RELEASE_MANAGED_TEMPLATE_PROPERTIES },
    );
  }

  /** The release role may move the image parameter; it gets no right on the template itself. */
  private grantRelease(name: string, args: FleetArgs): aws.iam.RolePolicy {
    const partition = partitionOf(args.region);
    return new aws.iam.RolePolicy(
      `${name}-release-image-policy`,
      {
        role: args.releaseRoleName,
        name: "zcp-image-parameter",
        policy: this.imageParameter.name.apply((parameterName) =>
          JSON.stringify(imageParameterReleasePolicy({ partition, region: args.region, accountId: args.accountId, parameterName })),
        ),
      },
      // Was the launch-template grant: the same policy slot, now on the parameter.
      { parent: this, aliases: [{ name: `${name}-release-template-policy` }] },
    );
  }

  /** A preview says which image new instances boot now. */
  private grantPreview(name: string, args: FleetArgs): aws.iam.RolePolicy | undefined {
    if (args.previewRoleName === undefined) return undefined;
    const partition = partitionOf(args.region);
    return new aws.iam.RolePolicy(
      `${name}-preview-image-policy`,
      {
        role: args.previewRoleName,
        name: "zcp-image-parameter-read",
        policy: this.imageParameter.name.apply((parameterName) =>
          JSON.stringify(imageParameterPreviewPolicy({ partition, region: args.region, accountId: args.accountId, parameterName })),
        ),
      },
      { parent: this },
    );
  }

  /** Standby in this fleet's group, its target groups, its alarms: nothing else. */
  private grantTraffic(name: string, args: FleetArgs): aws.iam.RolePolicy | undefined {
    const t = args.traffic;
    if (!t) return undefined;
    const groupName = !t.standby
      ? undefined
      : args.autoScaling && "existingName" in args.autoScaling
        ? args.autoScaling.existingName
        : args.autoScaling
          ? launchTemplateName(args.app, args.environment)
          : undefined;
    if (t.standby && !groupName) throw new Error("zcp:traffic.control: asg-standby needs an Auto Scaling group in zcp:fleet");
    const document = trafficReleasePolicy({
      partition: partitionOf(args.region),
      region: args.region,
      accountId: args.accountId,
      autoScalingGroupName: groupName,
      targetGroupArns: t.targetGroupArns,
      alarmNames: t.alarmNames,
    });
    if (!document) return undefined;
    return new aws.iam.RolePolicy(
      `${name}-release-traffic-policy`,
      { role: args.releaseRoleName, name: "zcp-traffic", policy: JSON.stringify(document) },
      { parent: this },
    );
  }

  private createTargetGroup(name: string, tg: NonNullable<CreateGroupArgs["targetGroup"]>, tags: Record<string, string>): aws.lb.TargetGroup {
    return new aws.lb.TargetGroup(
      `${name}-tg`,
      {
        vpcId: tg.vpcId,
        port: tg.port,
        protocol: "HTTP",
        targetType: "instance",
        healthCheck: { path: tg.healthCheckPath, matcher: "200-299", interval: 15, healthyThreshold: 2, unhealthyThreshold: 3 },
        tags,
      },
      { parent: this },
    );
  }

  private createGroup(name: string, args: FleetArgs, g: CreateGroupArgs): aws.autoscaling.Group {
    const groupTags = { ...baseTags(args.app, args.environment), Name: `${args.app}-${args.environment}` };
    return new aws.autoscaling.Group(
      `${name}-asg`,
      {
        name: launchTemplateName(args.app, args.environment),
        minSize: g.minSize,
        maxSize: g.maxSize,
        desiredCapacity: g.desiredCapacity,
        vpcZoneIdentifiers: g.subnetIds,
        // `$Default` follows the version each release makes default.
        launchTemplate: { id: this.launchTemplate.id, version: "$Default" },
        ...(this.targetGroup ? { targetGroupArns: [this.targetGroup.arn], healthCheckType: "ELB" } : { healthCheckType: "EC2" }),
        healthCheckGracePeriod: 300,
        // Instances carry the tags releases select them by from their first moment, even
        // when the template's tag specifications are overridden.
        tags: Object.entries(groupTags).map(([key, value]) => ({ key, value, propagateAtLaunch: true })),
      },
      // Scaling policies and operators move the desired capacity; `pulumi up` must not reset it.
      { parent: this, ignoreChanges: ["desiredCapacity"] },
    );
  }

  /**
   * An existing group is read, never managed: it must exist (checked at preview), and its
   * instances must carry the `zcp:app` / `zcp:env` tags. A warning says so when the group
   * does not launch from this template, because new instances would then miss releases.
   */
  private adoptGroup(existingName: string): pulumi.Output<string> {
    const group = aws.autoscaling.getGroupOutput({ name: existingName }, { parent: this });
    return pulumi.all([group, this.launchTemplate.id]).apply(([g, templateId]) => {
      const usesTemplate = (g.launchTemplates ?? []).some((t) => t.id === templateId);
      if (!usesTemplate) {
        void pulumi.log.warn(
          `Auto Scaling Group ${g.name} does not launch from launch template ${templateId} ($Default); ` +
            `new instances will not boot released images until it does. Its instances also need the tags ` +
            `${TAG_APP} and ${TAG_ENV}.`,
          this,
        );
      }
      return g.name;
    });
  }
}
