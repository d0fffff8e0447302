/** LaunchTemplateRelease step: the new image becomes the template's default version. */
import { releaseImageToLaunchTemplate } from "../aws/launch-template.js";
import { stepPacing, traced, withClients } from "./context.js";
import type { LaunchTemplateReleaseInputs, LaunchTemplateReleaseOutputs } from "./types.js";

const STEP = "LaunchTemplateRelease";

export async function releaseTemplate(inputs: LaunchTemplateReleaseInputs): Promise<LaunchTemplateReleaseOutputs> {
  return traced(STEP, inputs.version, () =>
    withClients(inputs.region, async ({ ec2 }) => {
      const r = await releaseImageToLaunchTemplate(
        ec2,
        { launchTemplateId: inputs.launchTemplateId, imageId: inputs.imageId, app: inputs.app, version: inputs.version },
        stepPacing(STEP),
      );
      return { ...inputs, defaultVersion: r.defaultVersion, previousDefaultVersion: r.previousDefaultVersion };
    }),
  );
}
