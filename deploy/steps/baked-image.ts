/** BakedImage step: an image of a healthy instance on the new version, then retention. */
import { applyImageRetention, bakeImage as bake } from "../aws/images.js";
import { emitProgress } from "../progress.js";
import { stepPacing, traced, withClients } from "./context.js";
import type { BakedImageInputs, BakedImageOutputs } from "./types.js";

const STEP = "BakedImage";

export async function bakeImage(inputs: BakedImageInputs): Promise<BakedImageOutputs> {
  return traced(STEP, inputs.version, () =>
    withClients(inputs.region, async ({ ec2 }) => {
      const pacing = stepPacing(STEP);
      const { image, reused } = await bake(
        ec2,
        {
          instanceId: inputs.sourceInstanceId,
          app: inputs.app,
          env: inputs.environment,
          version: inputs.version,
          sha256: inputs.sha256,
          noReboot: inputs.noReboot,
          tagSnapshotsOnCreate: inputs.tagSnapshotsOnCreate,
        },
        { timeoutMinutes: inputs.waitTimeoutMinutes, pacing },
      );
      if (reused) emitProgress({ kind: "log", step: STEP, message: `reusing ${image.imageId} already baked for ${inputs.version}` });
      const retention = await applyImageRetention(
        ec2,
        { app: inputs.app, env: inputs.environment, keep: inputs.retain, launchTemplateId: inputs.launchTemplateId, protectImageIds: [image.imageId] },
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
  return withClients(news.region, async ({ ec2 }) => {
    const retention = await applyImageRetention(
      ec2,
      { app: news.app, env: news.environment, keep: news.retain, launchTemplateId: news.launchTemplateId, protectImageIds: [olds.imageId] },
      stepPacing(STEP),
    );
    return { ...news, imageId: olds.imageId, imageName: olds.imageName, reused: true, removedImages: retention.removed.map((r) => r.imageId) };
  });
}
