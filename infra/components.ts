/**
 * zcp's package entry for a team's own Pulumi program: the foundation's components, the
 * config schema and the outputs contract the release runner reads. Importing this reads no
 * stack config and creates nothing (unlike `infra/index.ts`, this repository's own program).
 *
 *   import { loadConfig, zcpFoundation } from "zero-credential-pipeline";
 *   export = zcpFoundation(loadConfig());          // the whole foundation, or
 *   import { ArtifactBucket, Roles } from "zero-credential-pipeline";   // pieces of it
 */
export { zcpFoundation, type FoundationStackOutputs } from "./foundation.js";
export { ArtifactBucket, POINTER_MAX_BYTES, type ArtifactBucketArgs } from "./artifact-bucket.js";
export { DeployDocument, agentObjectKey, type DeployDocumentArgs } from "./deploy-document.js";
export { Fleet, IMDS_HOP_LIMIT, RELEASE_MANAGED_TEMPLATE_PROPERTIES, type BootArgs, type CreateGroupArgs, type FleetArgs } from "./fleet.js";
export { GitHubOidc, type GitHubOidcArgs } from "./github-oidc.js";
export { Roles, type RolesArgs } from "./roles.js";
export { buildConvergeScript, type ConvergeScriptArgs } from "./user-data.js";
export { CONFIG_NAMESPACE, loadConfig, parseConfig, rawConfigFromEntries, type ZcpConfig } from "../shared/config.js";
export type { FoundationOutputs } from "../shared/outputs.js";
export { baseTags, TAG_APP, TAG_ENV } from "../shared/tags.js";
export { ConfigError, ExitCode, ReleaseFailedError, ReleaseLockedError, ZcpError } from "../shared/errors.js";
