/** LaunchTemplateRelease step: the new image becomes the template's default version. */
import { releaseImageToLaunchTemplate } from "../aws/launch-template.js";
import { readLatestPointer } from "../aws/latest-pointer.js";
import { PointerRaceError } from "../../shared/errors.js";
import { stepPacing, traced, withClients } from "./context.js";
import { catchUpNewcomers } from "./catch-up.js";
import type { LaunchTemplateReleaseInputs, LaunchTemplateReleaseOutputs } from "./types.js";

const STEP = "LaunchTemplateRelease";

export async function releaseTemplate(inputs: LaunchTemplateReleaseInputs): Promise<LaunchTemplateReleaseOutputs> {
  return traced(STEP, inputs.version, () =>
    withClients(inputs.region, async ({ ec2, s3 }) => {
      await catchUpNewcomers(inputs.catchUp, { step: STEP, imageId: inputs.imageId });
      const now = await readLatestPointer(s3, inputs.bucket, inputs.app, stepPacing(STEP));
      if ((now?.etag ?? "") !== inputs.expectedLatestEtag) {
        throw new PointerRaceError(
          `latest.json moved while this release ran (it now names ${now?.pointer.version ?? "nothing"}); ` +
            `the launch template was left at its current default version and latest.json was not touched`,
        );
      }
      const r = await releaseImageToLaunchTemplate(
        ec2,
        { launchTemplateId: inputs.launchTemplateId, imageId: inputs.imageId, app: inputs.app, version: inputs.version },
        stepPacing(STEP),
      );
      return { ...inputs, defaultVersion: r.defaultVersion, previousDefaultVersion: r.previousDefaultVersion };
    }),
  );
}
