/**
 * Before any image is taken from an instance, the agent on it checks the release tree against
 * the manifest root recorded when it was deployed, and clears the instance's identity
 * (ZCP_ACTION=prepare-image, see shared/agent/zcp-agent.sh). A release the app user changed
 * is a compromised instance: no image is baked from it and the release fails (and rolls back
 * when the rollout is still under way), naming the instance and what differs.
 */
import { ReleaseFailedError } from "../../shared/errors.js";
import type { AgentParams, Transport } from "../transport.js";

export interface ImagePreparationRequest {
  /** Parameters of the release the instance runs (the same as for its deploy). */
  params: AgentParams;
  /** How long the check may run on the instance (the deploy's execution timeout). */
  timeoutS: number;
  /** SendCommand's delivery timeout. @default timeoutS */
  deliveryTimeoutS?: number;
}

/** Runs prepare-image on `instanceId`; throws ReleaseFailedError unless the instance may be imaged. */
export async function prepareInstanceForImage(
  transport: Transport,
  instanceId: string,
  req: ImagePreparationRequest,
  log: (message: string) => void,
): Promise<void> {
  const [outcome] = await transport.runAgent([instanceId], { ...req.params, action: "prepare-image" }, {
    timeoutS: req.timeoutS,
    ...(req.deliveryTimeoutS !== undefined ? { deliveryTimeoutS: req.deliveryTimeoutS } : {}),
    maxErrors: "0",
  });
  if (outcome?.ok) {
    log(`${instanceId} may be imaged: ${outcome.message}`);
    return;
  }
  const said = typeof outcome?.result?.message === "string" && outcome.result.message ? outcome.result.message : (outcome?.message ?? "no answer from the agent");
  const compromised =
    outcome?.result?.reason === "tampered"
      ? "; the release tree on that instance was changed after it was deployed: treat the instance as compromised and replace it"
      : "";
  throw new ReleaseFailedError(`no image was baked from ${instanceId}: ${said}${compromised}`);
}
