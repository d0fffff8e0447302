/** LatestPointer step: move latest.json, compare-and-swap on the ETag the release started from. */
import { retainReleasedArtifacts } from "../aws/artifacts.js";
import { nextLatestPointer, readLatestPointer, writeLatestPointer } from "../aws/latest-pointer.js";
import { stepPacing, traced, withStepClients, type StepEnv } from "./context.js";
import { catchUpNewcomers } from "./catch-up.js";
import type { LatestPointerInputs, LatestPointerOutputs } from "./types.js";

const STEP = "LatestPointer";

export async function promoteLatestPointer(inputs: LatestPointerInputs, env: StepEnv = {}): Promise<LatestPointerOutputs> {
  return traced(STEP, inputs.version, () =>
    withStepClients(inputs.region, env, async ({ s3 }) => {
      await catchUpNewcomers(inputs.catchUp, { step: STEP, imageId: inputs.imageId }, env);
      const pacing = stepPacing(STEP);
      // The previous pointer's content only feeds the `previous` field; the swap itself is
      // guarded by the ETag captured when the release started, not by this read.
      const current = await readLatestPointer(s3, inputs.bucket, inputs.app, pacing);
      const releasedAt = new Date().toISOString();
      const pointer = nextLatestPointer(current?.pointer, {
        version: inputs.version,
        key: inputs.key,
        sha256: inputs.sha256,
        ...(inputs.imageId ? { imageId: inputs.imageId } : {}),
        ...(inputs.launchTemplateVersion ? { launchTemplateVersion: inputs.launchTemplateVersion } : {}),
        releasedAt,
      });
      const expected = inputs.expectedEtag === "" ? undefined : inputs.expectedEtag;
      const { etag } = await writeLatestPointer(s3, inputs.bucket, inputs.app, pointer, expected, pacing);
      await retainReleasedArtifacts(s3, { bucket: inputs.bucket, app: inputs.app, before: current?.pointer, after: pointer }, pacing);
      // The catch-up spec (the fleet's settings and instance list) is an input only; it stays out of state.
      const { catchUp: _catchUp, ...rest } = inputs;
      return { ...rest, etag, releasedAt, previousVersion: pointer.previous ?? null };
    }),
  );
}
