/**
 * The release stack's program: one release is one update of this stack.
 *
 *   Artifact → FleetDeployment → BakedImage → LaunchTemplateRelease → LatestPointer
 *
 * Each step depends on the one before, so the engine stops at the first failure and the
 * later steps (image, template, latest pointer) stay as they were.
 *
 * The image overlaps the rollout without changing that order: once the canary has passed its
 * soak, FleetDeployment starts CreateImage from it (a `candidate` image) and rolls the
 * remaining batches meanwhile; BakedImage, which still runs only after every batch is
 * healthy, waits for that candidate and promotes it. A failed rollout retires the candidate.
 * See deploy/steps/candidate-image.ts.
 */
import * as pulumi from "@pulumi/pulumi";
import type { PulumiFn } from "@pulumi/pulumi/automation/index.js";
import { Artifact } from "./providers/artifact.js";
import { FleetDeployment } from "./providers/fleet-deployment.js";
import { BakedImage } from "./providers/baked-image.js";
import { LaunchTemplateRelease } from "./providers/launch-template-release.js";
import { LatestPointer } from "./providers/latest-pointer.js";
import { s3Uri } from "./aws/artifacts.js";
import type { FleetDeploymentInputs } from "./steps/types.js";
import type { ImageBakeStart } from "../shared/config.js";

export interface ReleasePlan {
  app: string;
  environment: string;
  region: string;
  bucket: string;
  version: string;
  artifactKey: string;
  sha256: string;
  fleet: Omit<FleetDeploymentInputs, "app" | "environment" | "region" | "version" | "sha256" | "bucket" | "artifactKey">;
  image: { enabled: boolean; noReboot: boolean; retain: number; waitTimeoutMinutes: number; tagSnapshotsOnCreate: boolean; bakeStart: ImageBakeStart };
  launchTemplateId: string;
  /** The SSM parameter the launch template's image resolves from. */
  imageParameterName: string;
  /** ETag of latest.json when the release started ("" when absent). */
  latestEtag: string;
}

export function releaseProgram(plan: ReleasePlan): PulumiFn {
  return async () => {
    const artifact = new Artifact("artifact", {
      region: plan.region,
      bucket: plan.bucket,
      key: plan.artifactKey,
      version: plan.version,
      sha256: plan.sha256,
    });

    const fleetRelease = {
      app: plan.app,
      environment: plan.environment,
      region: plan.region,
      version: plan.version,
      sha256: plan.sha256,
      bucket: plan.bucket,
      artifactKey: plan.artifactKey,
      ...plan.fleet,
    };
    const deployment = new FleetDeployment(
      "fleet",
      {
        ...fleetRelease,
        version: artifact.version,
        sha256: artifact.sha256,
        artifactKey: artifact.key,
        // A canary that reboots for its image would leave service while the next batch is out.
        ...(plan.image.enabled && plan.image.noReboot
          ? { candidateImage: { noReboot: true, tagSnapshotsOnCreate: plan.image.tagSnapshotsOnCreate, start: plan.image.bakeStart } }
          : {}),
      },
      { dependsOn: [artifact] },
    );

    // Instances that joined the fleet meanwhile get the release before the template and the
    // pointer move (deploy/steps/catch-up.ts).
    const catchUp = pulumi.output({ ...fleetRelease, deployedInstances: deployment.instances });

    let imageId: pulumi.Input<string> = "";
    let imageParameterVersion: pulumi.Input<number> = 0;
    let previousImageId: pulumi.Input<string> = "";
    const pointerAfter: pulumi.Resource[] = [deployment];
    if (plan.image.enabled) {
      const image = new BakedImage(
        "image",
        {
          app: plan.app,
          environment: plan.environment,
          region: plan.region,
          version: deployment.version,
          sha256: plan.sha256,
          sourceInstanceId: deployment.imageSourceInstanceId,
          candidateImageId: deployment.candidateImageId,
          preparation: {
            transport: plan.fleet.transport,
            params: { ...plan.fleet.runtime, app: plan.app, version: plan.version, artifact: s3Uri(plan.bucket, plan.artifactKey), sha256: plan.sha256 },
            timeoutS: plan.fleet.commandTimeoutS,
            ...(plan.fleet.deliveryTimeoutS !== undefined ? { deliveryTimeoutS: plan.fleet.deliveryTimeoutS } : {}),
          },
          noReboot: plan.image.noReboot,
          retain: plan.image.retain,
          waitTimeoutMinutes: plan.image.waitTimeoutMinutes,
          launchTemplateId: plan.launchTemplateId,
          imageParameterName: plan.imageParameterName,
          tagSnapshotsOnCreate: plan.image.tagSnapshotsOnCreate,
        },
        { dependsOn: [deployment] },
      );
      const template = new LaunchTemplateRelease(
        "launch-template",
        {
          region: plan.region,
          app: plan.app,
          bucket: plan.bucket,
          expectedLatestEtag: plan.latestEtag,
          imageParameterName: plan.imageParameterName,
          imageId: image.imageId,
          version: plan.version,
          catchUp,
        },
        { dependsOn: [image] },
      );
      imageId = image.imageId;
      imageParameterVersion = template.parameterVersion;
      previousImageId = template.previousImageId;
      pointerAfter.push(template);
    }

    const pointer = new LatestPointer(
      "latest",
      {
        region: plan.region,
        bucket: plan.bucket,
        app: plan.app,
        version: deployment.version,
        key: plan.artifactKey,
        sha256: plan.sha256,
        imageId,
        // Releases no longer make launch-template versions; latest.json names the image.
        launchTemplateVersion: 0,
        expectedEtag: plan.latestEtag,
        catchUp,
      },
      // `latest` moves only after new instances launch the release image.
      { dependsOn: pointerAfter },
    );

    return {
      version: deployment.version,
      sha256: plan.sha256,
      artifact: artifact.uri,
      instances: deployment.instances,
      batches: deployment.batches,
      fleetDurationMs: deployment.durationMs,
      batchAgentMs: deployment.batchAgentMs,
      batchDrainMs: deployment.batchDrainMs,
      imageId,
      imageParameterVersion,
      previousImageId,
      latestEtag: pointer.etag,
      releasedAt: pointer.releasedAt,
      previousVersion: pointer.previousVersion,
    };
  };
}
