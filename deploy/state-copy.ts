/**
 * Previews of a copy: a stack's state read without decrypting anything, put into a throwaway
 * `file://` backend, and previewed there.
 *
 * Pulumi decrypts a stack's data key as soon as it loads a state whose secrets provider is
 * `awskms://` (pulumi/pulumi `pkg/secrets/cloud/manager.go`), whether or not the state holds a
 * secret value; a preview of the stack itself therefore needs `kms:Decrypt` on the state's key.
 * Two reads need no key at all, and a preview is built from them alone:
 *
 * - `pulumi stack export` without `--show-secrets` hands out the checkpoint as stored: the S3
 *   backend's ExportDeployment returns the checkpoint's JSON without deserializing it
 *   (`pkg/backend/diy/backend.go`, `cmd/pulumi/stack/stack_export.go`). The automation API's
 *   `exportStack()` passes `--show-secrets` and so decrypts; it is not used here.
 * - the stack config file (`Pulumi.ENV.yaml`), read as text.
 *
 * From them the copy drops what names the real key (`secrets_providers` in the state;
 * `secretsprovider`, `encryptedkey`, `encryptionsalt` in the config) and replaces each
 * encrypted secret value by a placeholder secret, so the copy holds nothing encrypted with the
 * real key. A preview of the copy runs the same program against the same resources, so its
 * steps are those of the real stack, except where a secret value's content would matter
 * (zcp's stacks hold none: see docs/security.md).
 */
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import {
  LocalWorkspace,
  Stack,
  StackNotFoundError,
  type PulumiCommand,
  type PulumiFn,
  type ProjectSettings,
  type StackSettings,
} from "@pulumi/pulumi/automation/index.js";
import { ConfigError } from "../shared/errors.js";
import { LOCAL_ENV } from "./local/environment.js";

/** The key and value that mark a secret in a Pulumi checkpoint (pulumi/pulumi `sdk/go/common/resource/sig`). */
export const SECRET_SIG_KEY = "4dabf18193072939515e22adb298388d";
export const SECRET_SIG_VALUE = "1b47061264138c4ac30d75fd1eb44270";
/** What an encrypted secret becomes in the copy: a secret still, whose value is this string. */
export const SECRET_PLACEHOLDER = "[secret]";

/** `pulumi stack export`'s output: an untyped deployment (pulumi/pulumi `sdk/go/common/apitype`). */
export interface ExportedState {
  version: number;
  features?: string[];
  deployment: Record<string, unknown>;
}

export interface SanitizedState {
  state: ExportedState;
  /** Where each encrypted secret was replaced by the placeholder (JSON paths in the deployment). */
  placeholders: string[];
}

/**
 * `PulumiCommand.run`, which the SDK's types mark internal: it is how every workspace command
 * runs the CLI, with the workspace's environment, and how a failure becomes a typed error
 * (StackNotFoundError). The automation API has no public call for `stack export` without
 * `--show-secrets`, nor for `stack import` from a file of our choosing.
 */
export function runPulumi(cmd: PulumiCommand, args: string[], cwd: string, envVars: Record<string, string>): Promise<{ stdout: string }> {
  return (cmd as unknown as { run(a: string[], c: string, e: Record<string, string>): Promise<{ stdout: string }> }).run(args, cwd, envVars);
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * The exported state without its secrets provider and with every encrypted secret replaced by
 * a placeholder secret. `secretsProviders` is the throwaway copy's own provider: the state is
 * imported with it, so a placeholder secret can be stored again.
 */
export function sanitizeExportedState(exported: unknown, secretsProviders?: { type: string; state: unknown }, field = "state"): SanitizedState {
  if (!isRecord(exported)) throw new ConfigError(field, "is not an exported Pulumi state (a JSON object)");
  if (typeof exported.version !== "number") throw new ConfigError(`${field}.version`, `must be a number, got ${JSON.stringify(exported.version)}`);
  if (!isRecord(exported.deployment)) throw new ConfigError(`${field}.deployment`, "must be an object (the output of `pulumi stack export`)");
  if (exported.features !== undefined && !(Array.isArray(exported.features) && exported.features.every((f) => typeof f === "string"))) {
    throw new ConfigError(`${field}.features`, "must be a list of strings");
  }
  const placeholders: string[] = [];
  const walk = (value: unknown, at: string): unknown => {
    if (Array.isArray(value)) return value.map((v, i) => walk(v, `${at}[${i}]`));
    if (!isRecord(value)) return value;
    if (value[SECRET_SIG_KEY] === SECRET_SIG_VALUE && "ciphertext" in value) {
      placeholders.push(at);
      return { [SECRET_SIG_KEY]: SECRET_SIG_VALUE, plaintext: JSON.stringify(SECRET_PLACEHOLDER) };
    }
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, walk(v, `${at}.${k}`)]));
  };
  const { secrets_providers: _dropped, ...rest } = exported.deployment;
  void _dropped;
  const deployment = walk(rest, "deployment") as Record<string, unknown>;
  if (secretsProviders) deployment.secrets_providers = secretsProviders;
  return {
    state: { version: exported.version, ...(exported.features ? { features: [...(exported.features as string[])] } : {}), deployment },
    placeholders,
  };
}

/**
 * A stack config without what names its secrets provider. A `secure:` value cannot be carried
 * into a copy without decrypting it, so it is refused, naming the key (zcp's config holds none).
 */
export function stackConfigWithoutSecretsProvider(settings: StackSettings, file: string): StackSettings {
  const findSecure = (value: unknown, at: string): string | undefined => {
    if (Array.isArray(value)) {
      for (const [i, v] of value.entries()) {
        const found = findSecure(v, `${at}[${i}]`);
        if (found) return found;
      }
      return undefined;
    }
    if (!isRecord(value)) return undefined;
    if ("secure" in value) return at;
    for (const [k, v] of Object.entries(value)) {
      const found = findSecure(v, `${at}.${k}`);
      if (found) return found;
    }
    return undefined;
  };
  for (const [key, value] of Object.entries(settings.config ?? {})) {
    const secure = findSecure(value, key);
    if (secure) {
      throw new ConfigError(
        secure,
        `is a secret value in ${file}; a preview that decrypts nothing cannot carry it (keep secrets out of this stack's config, or preview with a role that may decrypt them)`,
      );
    }
  }
  const { secretsProvider: _p, encryptedKey: _k, encryptionSalt: _s, ...rest } = settings;
  void _p;
  void _k;
  void _s;
  return rest;
}

/**
 * `pulumi stack export --stack NAME` (no `--show-secrets`: nothing is decrypted), run in
 * `workDir` with `envVars`; undefined when the backend has no such stack.
 */
export async function exportStateWithoutDecrypting(pulumi: PulumiCommand, workDir: string, envVars: Record<string, string>, stackName: string): Promise<unknown> {
  try {
    const result = await runPulumi(pulumi, ["stack", "export", "--stack", stackName], workDir, envVars);
    return JSON.parse(result.stdout) as unknown;
  } catch (err) {
    if (err instanceof StackNotFoundError) return undefined;
    throw err;
  }
}

export interface ThrowawayCopyOptions {
  stackName: string;
  /** The real stack's project (its name keeps the copy's URNs those of the real stack). */
  projectSettings: ProjectSettings;
  /** `pulumi stack export`'s output for the real stack. */
  exported: unknown;
  /** The real stack's config, when it has one (the foundation's `Pulumi.ENV.yaml`). */
  stackSettings?: StackSettings;
  /** Where the copy lives: its workspace, `backend/` (the file backend) and `passphrase`. */
  dir: string;
  /** The program to preview (an inline program), if not the project's own. */
  program?: PulumiFn;
  /** Environment for the engine; the backend and passphrase are set here. */
  envVars: Record<string, string>;
  pulumiCommand: PulumiCommand;
}

export interface ThrowawayCopy {
  stack: Stack;
  backendUrl: string;
  /** A file holding the copy's passphrase (PULUMI_CONFIG_PASSPHRASE_FILE). */
  passphraseFile: string;
  /** The copy's stack config (`pulumi preview --config-file`). */
  configFile: string;
  placeholders: string[];
}

/**
 * Makes a throwaway copy of a stack in `dir`: a `file://` backend whose one stack holds the
 * sanitized state, encrypted (if at all) with a random passphrase that exists only in `dir`.
 * It reads and writes nothing outside `dir`; removing `dir` removes the copy.
 */
export async function makeThrowawayCopy(opts: ThrowawayCopyOptions): Promise<ThrowawayCopy> {
  const backendDir = path.join(opts.dir, "backend");
  fs.mkdirSync(backendDir, { recursive: true, mode: 0o700 });
  const passphrase = crypto.randomBytes(24).toString("base64url");
  const passphraseFile = path.join(opts.dir, "passphrase");
  fs.writeFileSync(passphraseFile, passphrase, { mode: 0o600 });
  const backendUrl = `file://${backendDir}`;
  const envVars: Record<string, string> = { ...opts.envVars, PULUMI_BACKEND_URL: backendUrl, PULUMI_CONFIG_PASSPHRASE: passphrase };
  const ws = await LocalWorkspace.create({
    workDir: opts.dir,
    projectSettings: { ...opts.projectSettings, backend: { url: backendUrl } },
    envVars,
    pulumiCommand: opts.pulumiCommand,
    secretsProvider: "passphrase",
    ...(opts.program ? { program: opts.program } : {}),
  });
  // Settings the real config carries besides the secrets provider travel with the copy.
  const sanitizedSettings = opts.stackSettings ? stackConfigWithoutSecretsProvider(opts.stackSettings, `Pulumi.${opts.stackName}.yaml`) : undefined;
  const stack = await Stack.create(opts.stackName, ws);
  const own = await ws.stackSettings(opts.stackName);
  if (!own.encryptionSalt) throw new Error(`the copy of stack ${opts.stackName} got no passphrase salt`);
  if (sanitizedSettings) await ws.saveStackSettings(opts.stackName, { ...sanitizedSettings, encryptionSalt: own.encryptionSalt });
  // The passphrase provider's state is its salt (pulumi/pulumi `pkg/secrets/passphrase`).
  const { state, placeholders } = sanitizeExportedState(opts.exported, { type: "passphrase", state: { salt: own.encryptionSalt } });
  const stateFile = path.join(opts.dir, "state.json");
  fs.writeFileSync(stateFile, JSON.stringify(state), { mode: 0o600 });
  await runPulumi(opts.pulumiCommand, ["stack", "import", "--stack", opts.stackName, "--file", stateFile], opts.dir, envVars);
  fs.rmSync(stateFile, { force: true });
  return { stack, backendUrl, passphraseFile, configFile: path.join(opts.dir, `Pulumi.${opts.stackName}.yaml`), placeholders };
}

// ---------------------------------------------------------------- `zcp state copy`

export interface FoundationCopy {
  stack: string;
  /** PULUMI_BACKEND_URL for the preview of the copy. */
  backendUrl: string;
  /** PULUMI_CONFIG_PASSPHRASE_FILE for the preview of the copy. */
  passphraseFile: string;
  /** `pulumi preview --config-file` for the preview of the copy. */
  configFile: string;
  /** Encrypted secret values replaced by placeholders (paths in the state). */
  placeholders: string[];
}

/**
 * `zcp state copy --env ENV --to DIR`: a throwaway copy of foundation stack ENV (of the project
 * in `projectDir`, from the backend the CLI is logged in to) in DIR, for CI's foundation
 * previews. It exports the state without decrypting anything and reads `Pulumi.ENV.yaml` as
 * text, so the KMS key that encrypts the stack's secrets is never used; a preview of the copy
 * then needs no KMS right either.
 */
export async function copyFoundationState(stackName: string, projectDir: string, dir: string): Promise<FoundationCopy> {
  if (stackName === LOCAL_ENV) throw new ConfigError("--env", "the local environment has no foundation stack to copy; name one (dev, prod, ...)");
  const configFile = path.join(projectDir, `Pulumi.${stackName}.yaml`);
  if (!fs.existsSync(configFile)) throw new ConfigError("--env", `unknown environment "${stackName}": no Pulumi.${stackName}.yaml in ${projectDir}`);
  const target = path.resolve(dir);
  if (fs.existsSync(target) && fs.readdirSync(target).length > 0) throw new ConfigError("--to", `must be a new or empty directory, and ${target} is not empty`);
  const real = await LocalWorkspace.create({ workDir: projectDir });
  const project = await real.projectSettings();
  const settings = await real.stackSettings(stackName);
  // Refused before anything is read from the backend: a secret config value cannot be copied.
  stackConfigWithoutSecretsProvider(settings, `Pulumi.${stackName}.yaml`);
  const exported = await exportStateWithoutDecrypting(real.pulumiCommand, projectDir, {}, stackName);
  if (exported === undefined) throw new ConfigError("--env", `the state backend has no foundation stack "${stackName}" (project ${project.name}); check \`pulumi login\``);
  fs.mkdirSync(target, { recursive: true, mode: 0o700 });
  const copy = await makeThrowawayCopy({
    stackName,
    // Only the name matters: it keeps the copy's URNs those of the real stack.
    projectSettings: { name: project.name, runtime: project.runtime ?? "nodejs" },
    exported,
    stackSettings: settings,
    dir: target,
    envVars: {},
    pulumiCommand: real.pulumiCommand,
  });
  return { stack: stackName, backendUrl: copy.backendUrl, passphraseFile: copy.passphraseFile, configFile: copy.configFile, placeholders: copy.placeholders };
}

export function formatFoundationCopy(c: FoundationCopy): string {
  return [
    `copied foundation stack ${c.stack} without decrypting anything` +
      (c.placeholders.length > 0 ? `; ${c.placeholders.length} encrypted value(s) replaced by "${SECRET_PLACEHOLDER}": ${c.placeholders.join(", ")}` : ""),
    `preview it with:`,
    `  PULUMI_BACKEND_URL=${c.backendUrl} PULUMI_CONFIG_PASSPHRASE_FILE=${c.passphraseFile} \\`,
    `    pulumi preview --stack ${c.stack} --config-file ${c.configFile}`,
  ].join("\n");
}
