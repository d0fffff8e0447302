/**
 * LaunchTemplateRelease: the release image becomes the image new instances launch, by a write
 * of the image parameter the launch template resolves its image from (`resolve:ssm:`). The
 * template is never written, and the foundation ignores the parameter's value.
 */
import * as pulumi from "@pulumi/pulumi";
import type { LaunchTemplateReleaseInputs, LaunchTemplateReleaseOutputs } from "../steps/types.js";
import { StepResource, changedKeys, stepModulePath } from "./common.js";

const IMPL = stepModulePath("launch-template-release");
type Impl = typeof import("../steps/launch-template-release.js");

export const launchTemplateReleaseProvider: pulumi.dynamic.ResourceProvider<LaunchTemplateReleaseInputs, LaunchTemplateReleaseOutputs> = {
  async diff(_id, olds, news) {
    // The expected pointer ETag is a guard, not a reason to move the image again.
    const changed = changedKeys({ ...olds }, { ...news }, ["imageParameterName", "imageId", "version", "region"]);
    return { changes: changed.length > 0, replaces: [], deleteBeforeReplace: false };
  },
  async create(inputs) {
    const impl = require(IMPL) as Impl;
    const outs = await impl.releaseTemplate(inputs);
    return { id: inputs.imageParameterName, outs };
  },
  async update(_id, _olds, news) {
    const impl = require(IMPL) as Impl;
    return { outs: await impl.releaseTemplate(news) };
  },
  async delete() {
    // Never move the image back on delete: that would revert instances launched later.
  },
};

type Args = { [K in keyof LaunchTemplateReleaseInputs]: pulumi.Input<LaunchTemplateReleaseInputs[K]> };

export class LaunchTemplateRelease extends StepResource {
  declare readonly parameterVersion: pulumi.Output<number>;
  declare readonly previousImageId: pulumi.Output<string>;
  constructor(name: string, args: Args, opts?: pulumi.CustomResourceOptions) {
    super(__filename, "launchTemplateReleaseProvider", "LaunchTemplateRelease", name, { ...args, parameterVersion: undefined, previousImageId: undefined }, opts);
  }
}
