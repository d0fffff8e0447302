/**
 * Artifact: the package the runner already uploaded. Verifies the object exists and its
 * sha256 matches; deleting the resource leaves the artifact in place (artifacts are
 * immutable and expire by the bucket's lifecycle rule, so rollbacks can reuse them).
 */
import * as pulumi from "@pulumi/pulumi";
import type { ArtifactInputs, ArtifactOutputs } from "../steps/types.js";
import { StepResource, changedKeys, stepModulePath } from "./common.js";

const IMPL = stepModulePath("artifact");
type Impl = typeof import("../steps/artifact.js");
const KEYS = ["region", "bucket", "key", "version", "sha256"] as const;

export const artifactProvider: pulumi.dynamic.ResourceProvider<ArtifactInputs, ArtifactOutputs> = {
  async diff(_id, olds, news) {
    const changed = changedKeys({ ...olds }, { ...news }, KEYS);
    return { changes: changed.length > 0, replaces: [], deleteBeforeReplace: false };
  },
  async create(inputs) {
    const impl = require(IMPL) as Impl;
    return { id: `${inputs.bucket}/${inputs.key}`, outs: await impl.verify(inputs) };
  },
  async update(_id, _olds, news) {
    const impl = require(IMPL) as Impl;
    return { outs: await impl.verify(news) };
  },
  async delete() {
    // The artifact outlives the stack's record of it.
  },
};

export class Artifact extends StepResource {
  declare readonly uri: pulumi.Output<string>;
  declare readonly sha256: pulumi.Output<string>;
  declare readonly version: pulumi.Output<string>;
  declare readonly key: pulumi.Output<string>;
  declare readonly bytes: pulumi.Output<number>;
  constructor(name: string, args: { [K in keyof ArtifactInputs]: pulumi.Input<ArtifactInputs[K]> }, opts?: pulumi.CustomResourceOptions) {
    super(__filename, "artifactProvider", "Artifact", name, { ...args, uri: undefined, bytes: undefined }, opts);
  }
}
