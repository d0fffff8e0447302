/**
 * BakedImage step: the release image, then retention. Every batch is healthy by the time it
 * runs. Usually FleetDeployment already started the image from the canary (a candidate);
 * this waits for it and promotes it to the release image. Otherwise it bakes one from a
 * healthy instance now.
 */
import type { EC2Client } from "@aws-sdk/client-ec2";
import type { SSMClient } from "@aws-sdk/client-ssm";
import { createSendCommandClient } from "../aws/clients.js";
import {
  applyImageRetention,
  bakeImage as bake,
  imageStage,
  setImageStage,
  tagImageSnapshots,
  waitForImageAvailable,
  type BakeImageRequest,
  type ImageSummary,
  type ImageWaitOptions,
} from "../aws/images.js";
import { emitProgress } from "../progress.js";
import { transportFor } from "./fleet-deployment.js";
import { prepareInstanceForImage } from "./image-preparation.js";
import { stepPacing, traced, withClients, withStepClients, type StepEnv } from "./context.js";
import type { BakedImageInputs, BakedImageOutputs } from "./types.js";

const STEP = "BakedImage";

/** Waits for the candidate FleetDeployment started, then makes it the release image. */
async function promoteCandidate(ec2: EC2Client, imageId: string, req: BakeImageRequest, wait: ImageWaitOptions): Promise<ImageSummary> {
  const log = (message: string) => emitProgress({ kind: "log", step: STEP, message });
  log(`waiting for candidate image ${imageId}, baking since the canary passed`);
  const image = await waitForImageAvailable(ec2, imageId, wait);
  if (req.tagSnapshotsOnCreate === false) await tagImageSnapshots(ec2, image, req, wait.pacing ?? {});
  if (imageStage(image) !== "released") await setImageStage(ec2, imageId, "released", wait.pacing ?? {});
  log(`candidate image ${imageId} is available and is now the release image`);
  return image;
}

export async function bakeImage(inputs: BakedImageInputs, env: StepEnv = {}): Promise<BakedImageOutputs> {
  return traced(STEP, inputs.version, () =>
    withStepClients(inputs.region, env, async (clients) => {
      const { ec2, ssm } = clients;
      const pacing = { ...stepPacing(STEP), ...(env.sleep ? { sleep: env.sleep } : {}), ...(env.now ? { now: env.now } : {}) };
      const req: BakeImageRequest = {
        instanceId: inputs.sourceInstanceId,
        app: inputs.app,
        env: inputs.environment,
        version: inputs.version,
        sha256: inputs.sha256,
        noReboot: inputs.noReboot,
        tagSnapshotsOnCreate: inputs.tagSnapshotsOnCreate,
      };
      const wait: ImageWaitOptions = { timeoutMinutes: inputs.waitTimeoutMinutes, pacing };
      // A new image from the source instance only once its agent has checked the release
      // against its manifest and cleared the instance's identity.
      const preparation = inputs.preparation;
      const hooks = preparation
        ? {
            beforeCreate: async () => {
              // SendCommand without SDK retries, as in FleetDeployment (deploy/aws/clients.ts).
              let sendCommandClient: SSMClient | undefined;
              try {
                return await prepareInstanceForImage(
                  env.transport ?? transportFor(preparation.transport, clients, (sendCommandClient = createSendCommandClient({ region: inputs.region }))),
                  inputs.sourceInstanceId,
                  preparation,
                  (message) => emitProgress({ kind: "log", step: STEP, message }),
                );
              } finally {
                sendCommandClient?.destroy();
              }
            },
          }
        : {};
      const { image, reused } = inputs.candidateImageId
        ? { image: await promoteCandidate(ec2, inputs.candidateImageId, req, wait), reused: false }
        : await bake(ec2, req, wait, hooks);
      if (reused) emitProgress({ kind: "log", step: STEP, message: `reusing ${image.imageId} already baked for ${inputs.version}` });
      const retention = await applyImageRetention(
        ec2,
        {
          app: inputs.app,
          env: inputs.environment,
          keep: inputs.retain,
          launchTemplateId: inputs.launchTemplateId,
          ...(inputs.imageParameterName ? { imageParameter: { ssm, name: inputs.imageParameterName } } : {}),
          protectImageIds: [image.imageId],
        },
        pacing,
      );
      return {
        ...inputs,
        imageId: image.imageId,
        imageName: image.name,
        reused,
        removedImages: retention.removed.map((r) => r.imageId),
      };
    }),
  );
}

/** Settings changed but not the version: keep the image, apply retention again. */
export async function reapplyRetention(olds: BakedImageOutputs, news: BakedImageInputs): Promise<BakedImageOutputs> {
  return withClients(news.region, async ({ ec2, ssm }) => {
    const retention = await applyImageRetention(
      ec2,
      {
        app: news.app,
        env: news.environment,
        keep: news.retain,
        launchTemplateId: news.launchTemplateId,
        ...(news.imageParameterName ? { imageParameter: { ssm, name: news.imageParameterName } } : {}),
        protectImageIds: [olds.imageId],
      },
      stepPacing(STEP),
    );
    return { ...news, imageId: olds.imageId, imageName: olds.imageName, reused: true, removedImages: retention.removed.map((r) => r.imageId) };
  });
}
