/**
 * The whole zcp foundation of one app in one environment and account, from a parsed config:
 * the GitHub OIDC provider (created or adopted), roles, artifact bucket, deploy document,
 * launch template and fleet, behind providers pinned to the configured account. Returns the
 * outputs the release runner reads; a stack program exports them as they are:
 *
 *   import { loadConfig, zcpFoundation } from "zero-credential-pipeline";
 *   export = zcpFoundation(loadConfig());
 */
import * as aws from "@pulumi/aws";
import * as awsnative from "@pulumi/aws-native";
import * as pulumi from "@pulumi/pulumi";
import type { ZcpConfig } from "../shared/config.js";
import { artifactPrefix as artifactPrefixOf } from "../shared/naming.js";
import type { FoundationOutputs } from "../shared/outputs.js";
import { TAG_APP, TAG_ENV, baseTags } from "../shared/tags.js";
import { ArtifactBucket } from "./artifact-bucket.js";
import { DeployDocument } from "./deploy-document.js";
import { Fleet } from "./fleet.js";
import { GitHubOidc } from "./github-oidc.js";
import { Roles } from "./roles.js";

/** Every key of the contract, required here even where the interface makes it optional. */
export type FoundationStackOutputs = { [K in keyof FoundationOutputs]-?: pulumi.Input<NonNullable<FoundationOutputs[K]>> };

export function zcpFoundation(config: ZcpConfig): FoundationStackOutputs {
  const tags = baseTags(config.app, config.environment);

  // Explicit providers pinned to the configured account and region: run with credentials for
  // any other account (prod's stack with dev's credentials, or the reverse) and every
  // operation is refused before anything is read or changed.
  const accountGuard = {
    region: config.aws.region,
    allowedAccountIds: [config.aws.accountId],
  };
  const awsProvider = new aws.Provider("aws", { ...accountGuard });
  const nativeProvider = new awsnative.Provider("aws-native", { ...accountGuard, region: config.aws.region as awsnative.Region });
  const opts: pulumi.ComponentResourceOptions = { providers: [awsProvider, nativeProvider] };

  const oidc = new GitHubOidc(
    "github-oidc",
    config.oidc.mode === "existing" ? { existingProviderArn: config.oidc.existingProviderArn } : { create: true, tags },
    opts,
  );

  const artifacts = new ArtifactBucket(
    "artifacts",
    {
      app: config.app,
      environment: config.environment,
      region: config.aws.region,
      retainDays: config.artifacts.retainDays,
      noncurrentRetainDays: config.artifacts.noncurrentRetainDays,
      promoteReaders: config.artifacts.promoteReaders,
      tags,
    },
    opts,
  );

  const agent = new DeployDocument(
    "deploy-document",
    {
      app: config.app,
      environment: config.environment,
      bucketName: artifacts.bucketName,
      executionTimeoutS: config.deploy.commandTimeoutS,
      pins: {
        appDir: config.runtime.appDir,
        appUser: config.runtime.user,
        service: config.runtime.service,
        appRoot: config.runtime.appRoot,
      },
      tags,
    },
    opts,
  );

  const roles = new Roles(
    "roles",
    {
      app: config.app,
      environment: config.environment,
      accountId: config.aws.accountId,
      region: config.aws.region,
      github: config.github,
      oidcProviderArn: oidc.providerArn,
      bucketName: artifacts.bucketName,
      documentName: agent.documentName,
      ...(config.stateBackend ? { stateBackend: config.stateBackend } : {}),
      ...(config.artifacts.promoteFrom ? { promoteFrom: config.artifacts.promoteFrom } : {}),
      tags,
    },
    opts,
  );

  const fleetConfig = config.fleet;
  const fleet = new Fleet(
    "fleet",
    {
      app: config.app,
      environment: config.environment,
      accountId: config.aws.accountId,
      region: config.aws.region,
      imageId: config.baseAmiId,
      ...(fleetConfig.instanceType ? { instanceType: fleetConfig.instanceType } : {}),
      securityGroupIds: fleetConfig.securityGroupIds,
      instanceProfileName: roles.instanceProfileName,
      releaseRoleName: roles.releaseRoleName,
      previewRoleName: roles.previewRole.name,
      boot: {
        bucketName: artifacts.bucketName,
        agentKey: agent.agentKey,
        agentSha256: agent.agentSha256,
        appDir: config.runtime.appDir,
        appRoot: config.runtime.appRoot,
        appUser: config.runtime.user,
        service: config.runtime.service,
        processManager: config.runtime.processManager,
        healthUrl: config.runtime.healthUrl,
        healthTimeoutS: config.runtime.healthTimeoutS,
        keepReleases: config.deploy.keepReleases,
      },
      autoScaling:
        fleetConfig.mode === "existing"
          ? { existingName: fleetConfig.asgName }
          : {
              create: {
                minSize: fleetConfig.minSize,
                maxSize: fleetConfig.maxSize,
                desiredCapacity: fleetConfig.desiredCapacity,
                subnetIds: fleetConfig.subnetIds,
                ...(fleetConfig.targetGroup ? { targetGroup: fleetConfig.targetGroup } : {}),
              },
            },
      // `auto` means standby: the foundation always has a group (created or adopted).
      traffic: {
        standby: config.traffic.control === "auto" || config.traffic.control === "asg-standby",
        targetGroupArns: config.traffic.control === "target-group" ? config.traffic.targetGroupArns : [],
        alarmNames: config.deploy.alarms,
      },
      tags,
    },
    opts,
  );

  const outputs: FoundationStackOutputs = {
    app: config.app,
    environment: config.environment,
    accountId: config.aws.accountId,
    region: config.aws.region,
    bucket: artifacts.bucketName,
    artifactPrefix: artifactPrefixOf(config.app),
    documentName: agent.documentName,
    launchTemplateId: fleet.launchTemplateId,
    imageParameterName: fleet.imageParameterName,
    // Both fleet modes (create or adopt) yield a group, so the name is always there.
    autoScalingGroupName: fleet.autoScalingGroupName!,
    fleetTags: { [TAG_APP]: config.app, [TAG_ENV]: config.environment },
    releaseRoleArn: roles.releaseRoleArn,
    previewRoleArn: roles.previewRoleArn,
    instanceRoleArn: roles.instanceRoleArn,
    instanceProfileName: roles.instanceProfileName,
  };
    return outputs;
}
