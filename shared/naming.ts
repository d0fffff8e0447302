/**
 * Every name zcp derives, in one place, so the foundation, the runner and the agent agree.
 */

/** A release version: a tag or commit SHA. Fixed by the CLI contract. */
export const VERSION_PATTERN = "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$";
export const VERSION_RE = new RegExp(VERSION_PATTERN);
/** Application names become S3 prefixes, tag values, IAM and SSM names. */
export const APP_PATTERN = "^[a-z][a-z0-9-]{0,30}[a-z0-9]$";
export const APP_RE = new RegExp(APP_PATTERN);
/** Environment names (dev, prod, local, …). */
export const ENV_PATTERN = "^[a-z][a-z0-9-]{0,19}$";
export const ENV_RE = new RegExp(ENV_PATTERN);
export const SHA256_PATTERN = "^[0-9a-f]{64}$";
export const SHA256_RE = new RegExp(SHA256_PATTERN);

/** The project name of the per-environment release stack. */
export const RELEASE_PROJECT = "zero-credential-pipeline-release";

export function artifactPrefix(app: string): string {
  return `releases/${app}`;
}
export function artifactKey(app: string, version: string): string {
  return `${artifactPrefix(app)}/${version}.tar.gz`;
}
export function latestPointerKey(app: string): string {
  return `${artifactPrefix(app)}/latest.json`;
}
export function deployDocumentName(app: string, env: string): string {
  return `zcp-${app}-${env}-deploy`;
}
export function imageName(app: string, env: string, version: string, stamp: string): string {
  // AMI names: 3..128 chars of [A-Za-z0-9()[]./-_' @]; versions already fit.
  return `zcp-${app}-${env}-${version}-${stamp}`.slice(0, 128);
}
export function launchTemplateName(app: string, env: string): string {
  return `zcp-${app}-${env}`;
}
/**
 * The SSM parameter the launch template's image resolves from (`resolve:ssm:<name>`): a
 * release moves the fleet's image by writing this parameter, never the template itself.
 */
export function imageParameterName(app: string, env: string): string {
  return `/zcp/${app}/${env}/image-id`;
}
export function roleName(app: string, env: string, kind: "release" | "preview" | "instance"): string {
  return `zcp-${app}-${env}-${kind}`;
}
