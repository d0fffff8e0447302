/**
 * BakedImage: an AMI from a healthy instance on the released version, tagged with
 * app/env/version/sha256, waited on until available, then retention applied. A new version is
 * a replacement (a new image); deleting the old one is left to retention, which never removes
 * an image the image parameter, a launch-template version or a running instance still uses.
 */
import * as pulumi from "@pulumi/pulumi";
import type { BakedImageInputs, BakedImageOutputs } from "../steps/types.js";
import { StepResource, changedKeys, stepModulePath } from "./common.js";

const IMPL = stepModulePath("baked-image");
type Impl = typeof import("../steps/baked-image.js");

export const bakedImageProvider: pulumi.dynamic.ResourceProvider<BakedImageInputs, BakedImageOutputs> = {
  async diff(_id, olds, news) {
    const replaces = changedKeys({ ...olds }, { ...news }, ["version", "sha256", "app", "environment", "region"]);
    const updates = changedKeys({ ...olds }, { ...news }, ["retain", "noReboot", "waitTimeoutMinutes", "launchTemplateId", "imageParameterName"]);
    // The source instance only matters when a new image is made.
    return { changes: replaces.length + updates.length > 0, replaces, deleteBeforeReplace: false };
  },
  async create(inputs) {
    const impl = require(IMPL) as Impl;
    const outs = await impl.bakeImage(inputs);
    return { id: outs.imageId, outs };
  },
  async update(_id, olds, news) {
    const impl = require(IMPL) as Impl;
    return { outs: await impl.reapplyRetention(olds, news) };
  },
  async delete() {
    // Retention owns image removal (see applyImageRetention).
  },
};

type Args = { [K in keyof BakedImageInputs]: pulumi.Input<BakedImageInputs[K]> };

export class BakedImage extends StepResource {
  declare readonly imageId: pulumi.Output<string>;
  declare readonly imageName: pulumi.Output<string>;
  declare readonly reused: pulumi.Output<boolean>;
  constructor(name: string, args: Args, opts?: pulumi.CustomResourceOptions) {
    super(__filename, "bakedImageProvider", "BakedImage", name, { ...args, imageId: undefined, imageName: undefined, reused: undefined, removedImages: undefined }, opts);
  }
}
