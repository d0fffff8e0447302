/**
 * FleetDeployment: canary, soak, then batches, through the transport; on a failed batch it
 * rolls every switched instance back and fails the update with a per-instance summary.
 * A version (or artifact) change is an update, never a replacement: there is nothing to delete.
 */
import * as pulumi from "@pulumi/pulumi";
import type { FleetDeploymentInputs, FleetDeploymentOutputs } from "../steps/types.js";
import { StepResource, changedKeys, stepModulePath } from "./common.js";

const IMPL = stepModulePath("fleet-deployment");
type Impl = typeof import("../steps/fleet-deployment.js");
const KEYS = ["version", "sha256", "bucket", "artifactKey", "runtime", "transport", "autoScalingGroupName"] as const;

export const fleetDeploymentProvider: pulumi.dynamic.ResourceProvider<FleetDeploymentInputs, FleetDeploymentOutputs> = {
  async diff(_id, olds, news) {
    // Rollout settings (canary, batch, soak) alone do not redeploy the fleet.
    const changed = changedKeys({ ...olds }, { ...news }, KEYS);
    return { changes: changed.length > 0, replaces: [], deleteBeforeReplace: false };
  },
  async create(inputs) {
    const impl = require(IMPL) as Impl;
    return { id: `${inputs.app}-${inputs.environment}`, outs: await impl.deployFleet(inputs) };
  },
  async update(_id, _olds, news) {
    const impl = require(IMPL) as Impl;
    return { outs: await impl.deployFleet(news) };
  },
  async delete() {
    // Removing the record of a deployment leaves the instances as they are.
  },
};

type Args = { [K in keyof FleetDeploymentInputs]: pulumi.Input<FleetDeploymentInputs[K]> };

export class FleetDeployment extends StepResource {
  declare readonly version: pulumi.Output<string>;
  declare readonly imageSourceInstanceId: pulumi.Output<string>;
  declare readonly instances: pulumi.Output<FleetDeploymentOutputs["instances"]>;
  declare readonly batches: pulumi.Output<number>;
  declare readonly durationMs: pulumi.Output<number>;
  declare readonly batchAgentMs: pulumi.Output<number[]>;
  declare readonly candidateImageId: pulumi.Output<string>;
  declare readonly batchDrainMs: pulumi.Output<number[]>;
  constructor(name: string, args: Args, opts?: pulumi.CustomResourceOptions) {
    super(__filename, "fleetDeploymentProvider", "FleetDeployment", name, { ...args, instances: undefined, imageSourceInstanceId: undefined, batches: undefined, durationMs: undefined, batchAgentMs: undefined, candidateImageId: undefined, batchDrainMs: undefined }, opts);
  }
}
