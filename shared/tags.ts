/**
 * Tag keys zcp reads and writes. Instances are selected for a release by app and env tags;
 * images carry the version they were baked from.
 */
export const TAG_APP = "zcp:app";
export const TAG_ENV = "zcp:env";
export const TAG_VERSION = "zcp:version";
export const TAG_SHA256 = "zcp:sha256";
export const TAG_MANAGED_BY = "zcp:managed-by";
/**
 * Where an image is in its release: `candidate` while the fleet still rolls (baked from the
 * canary), `released` once every batch is healthy, `retired` when its release failed. Images
 * without the tag were baked after their rollout and count as released.
 */
export const TAG_IMAGE_STAGE = "zcp:image-stage";
export type ImageStage = "candidate" | "released" | "retired";

/**
 * Object tag on release artifacts that the bucket's expiry rule requires: artifacts are
 * uploaded `expire`; the release that makes one current or previous retags it `keep`, and the
 * release after which it is neither puts it back to `expire` (S3 lifecycle filters can only
 * include objects by tag, never exclude them).
 */
export const TAG_RETENTION = "zcp:retention";
export type Retention = "keep" | "expire";

export function baseTags(app: string, env: string): Record<string, string> {
  return { [TAG_APP]: app, [TAG_ENV]: env, [TAG_MANAGED_BY]: "zcp" };
}

/** The EC2/SSM filter that selects one app's instances in one environment. */
export function fleetSelector(app: string, env: string): { key: string; values: string[] }[] {
  return [
    { key: `tag:${TAG_APP}`, values: [app] },
    { key: `tag:${TAG_ENV}`, values: [env] },
  ];
}
