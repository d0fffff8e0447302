/** Artifact step: the runner uploaded the package; this proves it is there and unchanged. */
import { ReleaseFailedError } from "../../shared/errors.js";
import { s3Uri, verifyArtifact } from "../aws/artifacts.js";
import type { ArtifactInputs, ArtifactOutputs } from "./types.js";
import { stepPacing, traced, withClients } from "./context.js";

export async function verify(inputs: ArtifactInputs): Promise<ArtifactOutputs> {
  return traced("Artifact", inputs.version, () =>
    withClients(inputs.region, async ({ s3 }) => {
      const v = await verifyArtifact(s3, inputs.bucket, inputs.key, inputs.sha256, stepPacing("Artifact"));
      if (!v.ok) throw new ReleaseFailedError(`Artifact ${inputs.version}: ${v.reason}`);
      return { ...inputs, uri: s3Uri(inputs.bucket, inputs.key), bytes: v.head.size };
    }),
  );
}
