/**
 * The release image baked while the fleet rolls.
 *
 * Baking takes minutes on AWS (5 to 30 is common), the rollout takes minutes too, and the
 * image only needs one healthy instance on the new version. So once the canary has passed its
 * soak, FleetDeployment sends CreateImage for the canary and goes on with the remaining
 * batches; BakedImage then waits for that image instead of starting one. Until every batch is
 * healthy the image is only a `candidate` (tag zcp:image-stage): nothing launches from it, the
 * launch template still names the previous image, and a failed release retires it.
 *
 * The canary is imaged without a reboot only: a rebooting canary would leave the service
 * while the next batch is also out. With `image.noReboot: false` the bake waits for the
 * rollout, as before.
 *
 * Before CreateImage, `prepare` has the agent on the canary check its release against the
 * manifest recorded at deploy time and clear its identity (image-preparation.ts). A refusal is
 * not a lost overlap but a compromised canary: `start` rejects, and the rollout fails and
 * rolls back before the next batch.
 */
import type { EC2Client } from "@aws-sdk/client-ec2";
import { describeError } from "../../shared/errors.js";
import type { Pacing } from "../aws/call.js";
import { findOrCreateImage, retireImage, type BakeImageRequest } from "../aws/images.js";

export type CandidateRequest = Omit<BakeImageRequest, "instanceId" | "stage">;

interface Started {
  imageId: string;
  /** An image of this version existed already (a rollback, a retried release). */
  reused: boolean;
}

export class CandidateImage {
  private started: Promise<Started | undefined> | undefined;

  constructor(
    private readonly ec2: EC2Client,
    private readonly req: CandidateRequest,
    private readonly log: (message: string) => void,
    private readonly pacing: Pacing = {},
    /** Makes `instanceId` ready to be imaged, or throws why it may not be. @default none */
    private readonly prepare?: (instanceId: string) => Promise<void>,
  ) {}

  /**
   * Prepares `instanceId` and sends CreateImage for it (or adopts this version's image), without
   * waiting for the image. Rejects only when the instance may not be imaged; a failed
   * CreateImage only costs the overlap: BakedImage then bakes after the rollout.
   */
  async start(instanceId: string): Promise<void> {
    if (this.started) return;
    let refusal: { err: unknown } | undefined;
    const prepare = this.prepare;
    const hooks = prepare
      ? {
          beforeCreate: () =>
            prepare(instanceId).catch((err: unknown) => {
              refusal = { err };
              throw err;
            }),
        }
      : {};
    this.started = findOrCreateImage(this.ec2, { ...this.req, instanceId, stage: "candidate" }, this.pacing, hooks).then(
      (made) => {
        this.log(
          made.reused
            ? `image ${made.imageId} of ${this.req.version} exists already; the release will use it`
            : `canary passed: baking candidate image ${made.imageId} from ${instanceId} while the remaining batches roll`,
        );
        return { imageId: made.imageId, reused: made.reused };
      },
      (err: unknown) => {
        if (!refusal) this.log(`could not start the image bake from the canary (${describeError(err)}); the image is baked after the rollout`);
        return undefined;
      },
    );
    await this.started;
    if (refusal) throw refusal.err;
  }

  /** The candidate's id once CreateImage has answered; "" when none was started or it failed. */
  async imageId(): Promise<string> {
    return (await this.started)?.imageId ?? "";
  }

  /**
   * The release failed: a candidate this release made is retired (tagged, so nothing adopts
   * or launches from it; the next release's retention deregisters it once it has finished).
   * An image that existed before the release is left as it was.
   */
  async retire(): Promise<void> {
    const made = await this.started;
    if (!made || made.reused) return;
    try {
      await retireImage(this.ec2, made.imageId, this.pacing);
      this.log(`retired candidate image ${made.imageId}: the release failed`);
    } catch (err) {
      this.log(`could not retire candidate image ${made.imageId} (${describeError(err)}); the next release's retention removes it`);
    }
  }
}
