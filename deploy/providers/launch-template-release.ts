/**
 * LaunchTemplateRelease: a new launch-template version from the current default with the new
 * image, made default, so instances the ASG launches boot the released code. The foundation
 * ignores this drift (ignoreChanges on the default version).
 */
import * as pulumi from "@pulumi/pulumi";
import type { LaunchTemplateReleaseInputs, LaunchTemplateReleaseOutputs } from "../steps/types.js";
import { changedKeys, stepModulePath } from "./common.js";

const IMPL = stepModulePath("launch-template-release");
type Impl = typeof import("../steps/launch-template-release.js");

export const launchTemplateReleaseProvider: pulumi.dynamic.ResourceProvider<LaunchTemplateReleaseInputs, LaunchTemplateReleaseOutputs> = {
  async diff(_id, olds, news) {
    // The expected pointer ETag is a guard, not a reason to move the template again.
    const changed = changedKeys({ ...olds }, { ...news }, ["launchTemplateId", "imageId", "version", "region"]);
    return { changes: changed.length > 0, replaces: [], deleteBeforeReplace: false };
  },
  async create(inputs) {
    const impl = require(IMPL) as Impl;
    const outs = await impl.releaseTemplate(inputs);
    return { id: inputs.launchTemplateId, outs };
  },
  async update(_id, _olds, news) {
    const impl = require(IMPL) as Impl;
    return { outs: await impl.releaseTemplate(news) };
  },
  async delete() {
    // Never move the default version back on delete: that would revert instances launched later.
  },
};

type Args = { [K in keyof LaunchTemplateReleaseInputs]: pulumi.Input<LaunchTemplateReleaseInputs[K]> };

export class LaunchTemplateRelease extends pulumi.dynamic.Resource {
  declare readonly defaultVersion: pulumi.Output<number>;
  declare readonly previousDefaultVersion: pulumi.Output<number>;
  constructor(name: string, args: Args, opts?: pulumi.CustomResourceOptions) {
    super(launchTemplateReleaseProvider, name, { ...args, defaultVersion: undefined, previousDefaultVersion: undefined }, opts, "zcp", "LaunchTemplateRelease");
  }
}
