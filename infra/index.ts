/**
 * The zcp foundation program of this repository: one stack per environment and AWS account.
 * Reads the `zcp:` config, wires the components (`zcpFoundation`, which a team's own program
 * imports from the package) and exports exactly the outputs the release runner reads
 * (`FoundationOutputs` in shared/outputs.ts).
 */
import { loadConfig } from "../shared/config.js";
import { zcpFoundation } from "./foundation.js";

const outputs = zcpFoundation(loadConfig());

export const app = outputs.app;
export const environment = outputs.environment;
export const accountId = outputs.accountId;
export const region = outputs.region;
export const bucket = outputs.bucket;
export const artifactPrefix = outputs.artifactPrefix;
export const documentName = outputs.documentName;
export const launchTemplateId = outputs.launchTemplateId;
export const imageParameterName = outputs.imageParameterName;
export const autoScalingGroupName = outputs.autoScalingGroupName;
export const fleetTags = outputs.fleetTags;
export const releaseRoleArn = outputs.releaseRoleArn;
export const previewRoleArn = outputs.previewRoleArn;
export const instanceRoleArn = outputs.instanceRoleArn;
export const instanceProfileName = outputs.instanceProfileName;
