/**
 * `zcp config get KEY --env ENV`: one value of a foundation stack's validated config.
 *
 * It reads `Pulumi.ENV.yaml` through the automation API's stack settings, without opening
 * the stack: no backend login and no AWS session are needed, so a workflow can read a
 * setting (the role session length, `github.sessionDurationS`) before it assumes a role.
 * The whole config is validated as `zcp release` would validate it; a key the schema does
 * not know is bad input (exit 2) naming the key.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { LocalWorkspace } from "@pulumi/pulumi/automation/index.js";
import { CONFIG_NAMESPACE, parseConfig, rawConfigFromEntries, type ZcpConfig } from "../shared/config.js";
import { configKeys } from "../shared/config-reference.js";
import { ConfigError } from "../shared/errors.js";
import { LOCAL_ENV } from "./local/environment.js";

/** The validated config of foundation stack `env`, from `Pulumi.<env>.yaml` in `projectDir`. */
export async function readStackConfig(env: string, projectDir: string): Promise<ZcpConfig> {
  if (env === LOCAL_ENV) {
    throw new ConfigError("--env", 'the local environment has no stack config; zcp config get reads a foundation stack\'s Pulumi.ENV.yaml (dev, prod, ...)');
  }
  const file = path.join(projectDir, `Pulumi.${env}.yaml`);
  if (!fs.existsSync(file)) throw new ConfigError("--env", `unknown environment "${env}": no Pulumi.${env}.yaml in ${projectDir}`);
  const workspace = await LocalWorkspace.create({ workDir: projectDir });
  const settings = await workspace.stackSettings(env);
  const entries: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(settings.config ?? {})) {
    // A `secure:` value is never a zcp setting; leave it for the schema to name if it is one.
    entries[key] = typeof value === "object" && value !== null && "secure" in value ? "(secret)" : value;
  }
  return parseConfig(rawConfigFromEntries(entries), { stack: env });
}

/**
 * The value of `key` (`github.sessionDurationS`, with or without `zcp:`) in a validated
 * config, defaults applied; `undefined` for a known key that is not set.
 */
export function configValue(config: ZcpConfig, key: string): unknown {
  const bare = key.startsWith(`${CONFIG_NAMESPACE}:`) ? key.slice(CONFIG_NAMESPACE.length + 1) : key;
  if (!configKeys().includes(bare)) {
    throw new ConfigError(`${CONFIG_NAMESPACE}:${bare}`, "is not a zcp config key (docs/configuration.md lists them)");
  }
  let value: unknown = config;
  for (const part of bare.split(".")) {
    if (typeof value !== "object" || value === null) return undefined;
    value = (value as Record<string, unknown>)[part];
  }
  return value;
}

/** Scalars as they are (`3600`, `50%`), lists and objects as JSON, an unset key as nothing. */
export function formatConfigValue(value: unknown): string {
  if (value === undefined) return "";
  return typeof value === "object" && value !== null ? JSON.stringify(value) : String(value);
}
