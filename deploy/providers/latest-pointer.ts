/**
 * LatestPointer: writes latest.json (version, key, sha256, image, time) with a
 * compare-and-swap on the ETag seen when the release started, only after every step above
 * succeeded. A lost race fails the update loudly instead of overwriting someone's release.
 */
import * as pulumi from "@pulumi/pulumi";
import type { LatestPointerInputs, LatestPointerOutputs } from "../steps/types.js";
import { StepResource, changedKeys, stepModulePath } from "./common.js";

const IMPL = stepModulePath("latest-pointer");
type Impl = typeof import("../steps/latest-pointer.js");

export const latestPointerProvider: pulumi.dynamic.ResourceProvider<LatestPointerInputs, LatestPointerOutputs> = {
  async diff(_id, olds, news) {
    const changed = changedKeys({ ...olds }, { ...news }, ["bucket", "app", "version", "key", "sha256", "imageId", "launchTemplateVersion", "region"]);
    return { changes: changed.length > 0, replaces: [], deleteBeforeReplace: false };
  },
  async create(inputs) {
    const impl = require(IMPL) as Impl;
    const outs = await impl.promoteLatestPointer(inputs);
    return { id: `${inputs.bucket}/${inputs.app}/latest.json`, outs };
  },
  async update(_id, _olds, news) {
    const impl = require(IMPL) as Impl;
    return { outs: await impl.promoteLatestPointer(news) };
  },
  async delete() {
    // latest.json stays: new instances converge to it.
  },
};

type Args = { [K in keyof LatestPointerInputs]: pulumi.Input<LatestPointerInputs[K]> };

export class LatestPointer extends StepResource {
  declare readonly etag: pulumi.Output<string>;
  declare readonly releasedAt: pulumi.Output<string>;
  declare readonly previousVersion: pulumi.Output<string | null>;
  constructor(name: string, args: Args, opts?: pulumi.CustomResourceOptions) {
    super(__filename, "latestPointerProvider", "LatestPointer", name, { ...args, etag: undefined, releasedAt: undefined, previousVersion: undefined }, opts);
  }
}
