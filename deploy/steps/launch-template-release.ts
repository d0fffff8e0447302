/**
 * LaunchTemplateRelease step: new instances launch the release image. The launch template's
 * image resolves from the image parameter (`resolve:ssm:`), so this writes that parameter and
 * nothing of the template.
 */
import { moveImageParameter } from "../aws/image-parameter.js";
import { readLatestPointer } from "../aws/latest-pointer.js";
import { PointerRaceError } from "../../shared/errors.js";
import { stepPacing, traced, withClients } from "./context.js";
import { catchUpNewcomers } from "./catch-up.js";
import type { LaunchTemplateReleaseInputs, LaunchTemplateReleaseOutputs } from "./types.js";

const STEP = "LaunchTemplateRelease";

export async function releaseTemplate(inputs: LaunchTemplateReleaseInputs): Promise<LaunchTemplateReleaseOutputs> {
  return traced(STEP, inputs.version, () =>
    withClients(inputs.region, async ({ s3, ssm }) => {
      await catchUpNewcomers(inputs.catchUp, { step: STEP, imageId: inputs.imageId });
      const now = await readLatestPointer(s3, inputs.bucket, inputs.app, stepPacing(STEP));
      if ((now?.etag ?? "") !== inputs.expectedLatestEtag) {
        throw new PointerRaceError(
          `latest.json moved while this release ran (it now names ${now?.pointer.version ?? "nothing"}); ` +
            `the image parameter ${inputs.imageParameterName} was left as it was and latest.json was not touched`,
        );
      }
      const moved = await moveImageParameter(ssm, { name: inputs.imageParameterName, imageId: inputs.imageId }, stepPacing(STEP));
      return { ...inputs, parameterVersion: moved.version, previousImageId: moved.previousImageId };
    }),
  );
}
