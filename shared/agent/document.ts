/**
 * The SSM Command document that runs the deploy agent, generated from the agent script
 * itself (`shared/agent/zcp-agent.sh`) so the two can never diverge.
 *
 * - The foundation creates the document from `buildDeployDocument()`.
 * - The release runner builds SendCommand `Parameters` from `DEPLOY_PARAMETERS`
 *   (`sendCommandParameters`).
 *
 * Every parameter reaches the script as an environment variable: the document declares
 * `interpolationType: ENV_VAR`, SSM Agent exposes parameter `foo` as `SSM_foo`, and the
 * command maps those to the agent's `ZCP_*` variables. No parameter value is ever pasted
 * into script text, so a value can carry no shell syntax into the instance; each parameter
 * also has an `allowedPattern`, and the agent validates its inputs again.
 */
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import * as zlib from "node:zlib";
import { ConfigError } from "../errors.js";
import { APP_PATTERN, SHA256_PATTERN, VERSION_PATTERN } from "../naming.js";

/** Where the agent lives, relative to the repository root. */
export const AGENT_SCRIPT_PATH = "shared/agent/zcp-agent.sh";

/** `s3://bucket/key` (keys as zcp writes them) or an absolute path on the instance. */
export const ARTIFACT_PATTERN = "^(s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/[A-Za-z0-9._/-]{1,1024}|/[A-Za-z0-9._/-]{1,4095})$";
/** Absolute, no spaces or shell syntax. Config validation also rejects `..` and `//`. */
export const APP_DIR_PATTERN = "^/[A-Za-z0-9._/-]{1,255}$";
/** A POSIX user name as useradd accepts it by default. */
export const APP_USER_PATTERN = "^[a-z_][a-z0-9_-]{0,31}$";
/** A supervisor program (or `group:program`) or a systemd unit name. */
export const SERVICE_PATTERN = "^[A-Za-z0-9][A-Za-z0-9_.@:-]{0,127}$";
export const PROCESS_MANAGER_PATTERN = "^(supervisor|systemd)$";
/** http(s) URL without credentials, spaces or quotes. */
export const HEALTH_URL_PATTERN = "^https?://[A-Za-z0-9.-]{1,253}(:[0-9]{1,5})?(/[A-Za-z0-9._~/?=&%+-]*)?$";
/** 1..3600 seconds, the agent's range. */
export const HEALTH_TIMEOUT_PATTERN = "^([1-9][0-9]{0,2}|[1-2][0-9]{3}|3[0-5][0-9]{2}|3600)$";
/** 1..50 older releases kept besides the current and the previous one, the agent's range. */
export const KEEP_RELEASES_PATTERN = "^([1-9]|[1-4][0-9]|50)$";
/** The release's sequence in latest.json, 0 for none (the agent's range: up to 12 digits). */
export const SEQUENCE_PATTERN = "^(0|[1-9][0-9]{0,11})$";

/** The agent's environment variables, fixed by the agent contract. */
export type AgentEnvName =
  | "ZCP_APP"
  | "ZCP_VERSION"
  | "ZCP_ARTIFACT"
  | "ZCP_SHA256"
  | "ZCP_APP_DIR"
  | "ZCP_APP_USER"
  | "ZCP_SERVICE"
  | "ZCP_PROCESS_MANAGER"
  | "ZCP_HEALTH_URL"
  | "ZCP_HEALTH_TIMEOUT_S"
  | "ZCP_KEEP_RELEASES"
  | "ZCP_SEQUENCE";

export interface DeployParameter {
  /** The document parameter (and SendCommand `Parameters` key); the script sees `SSM_<name>`. */
  readonly name: string;
  /** The agent variable it becomes. */
  readonly env: AgentEnvName;
  /** SSM rejects a SendCommand whose value does not match. */
  readonly allowedPattern: string;
  readonly description: string;
}

export const DEPLOY_PARAMETERS: readonly DeployParameter[] = [
  { name: "app", env: "ZCP_APP", allowedPattern: APP_PATTERN, description: "Application name." },
  { name: "version", env: "ZCP_VERSION", allowedPattern: VERSION_PATTERN, description: "Release version (tag or commit SHA)." },
  { name: "artifact", env: "ZCP_ARTIFACT", allowedPattern: ARTIFACT_PATTERN, description: "s3:// URI or absolute path of the release tar.gz." },
  { name: "sha256", env: "ZCP_SHA256", allowedPattern: SHA256_PATTERN, description: "Expected SHA-256 of the artifact (hex)." },
  { name: "appDir", env: "ZCP_APP_DIR", allowedPattern: APP_DIR_PATTERN, description: "Application directory (releases/, current, shared/)." },
  { name: "appUser", env: "ZCP_APP_USER", allowedPattern: APP_USER_PATTERN, description: "User the application runs as." },
  { name: "service", env: "ZCP_SERVICE", allowedPattern: SERVICE_PATTERN, description: "Process-manager service to restart." },
  { name: "processManager", env: "ZCP_PROCESS_MANAGER", allowedPattern: PROCESS_MANAGER_PATTERN, description: "supervisor or systemd." },
  { name: "healthUrl", env: "ZCP_HEALTH_URL", allowedPattern: HEALTH_URL_PATTERN, description: "URL that answers 2xx when the release is healthy." },
  { name: "healthTimeoutS", env: "ZCP_HEALTH_TIMEOUT_S", allowedPattern: HEALTH_TIMEOUT_PATTERN, description: "Seconds to wait for the health check." },
  { name: "keepReleases", env: "ZCP_KEEP_RELEASES", allowedPattern: KEEP_RELEASES_PATTERN, description: "Older releases kept besides the current and the previous one." },
  { name: "sequence", env: "ZCP_SEQUENCE", allowedPattern: SEQUENCE_PATTERN, description: "Release sequence (latest.json), 0 for none." },
];

/**
 * The document parameter that sets its aws:runShellScript step's `timeoutSeconds`: the execution
 * timeout, after which SSM Agent kills the run's process group (SIGKILL). Named and defaulted as
 * in AWS-RunShellScript. It never reaches the shell: SSM substitutes it into the step's input.
 */
export const EXECUTION_TIMEOUT_PARAMETER = "executionTimeout";
/** SSM Agent's default execution timeout (amazon-ssm-agent, pluginutil DefaultExecutionTimeoutInSeconds). */
export const DEFAULT_EXECUTION_TIMEOUT_S = 3600;
/** 30..172800 seconds (up to 48 h, what aws:runShellScript accepts). */
export const EXECUTION_TIMEOUT_PATTERN = "^([3-9][0-9]|[1-9][0-9]{2,4}|1[0-6][0-9]{4}|17[0-1][0-9]{3}|172800)$";

/**
 * The document parameter that chooses what the agent does: `deploy` (the default, so a sender
 * that does not know it still deploys) or `prepare-image`, sent to the instance an image is
 * about to be taken from (shared/agent/zcp-agent.sh: the release is checked against its
 * root-owned manifest, then machine-id, host keys and logs are cleared). Reaches the agent as
 * ZCP_ACTION through the environment, like every other parameter.
 */
export const ACTION_PARAMETER = "action";
export const AGENT_ACTIONS = ["deploy", "prepare-image"] as const;
export type AgentAction = (typeof AGENT_ACTIONS)[number];
export const ACTION_PATTERN = "^(deploy|prepare-image)$";

/** SSM Agent's first version with `interpolationType: ENV_VAR`. */
export const MIN_SSM_AGENT_VERSION = "3.3.2746.0";

/** SSM's limit on a document's content. */
export const MAX_DOCUMENT_BYTES = 64 * 1024;

export interface DocumentParameter {
  type: "String";
  description: string;
  allowedPattern: string;
  interpolationType?: "ENV_VAR";
  default?: string;
}

export interface DeployDocumentContent {
  schemaVersion: "2.2";
  description: string;
  parameters: Record<string, DocumentParameter>;
  mainSteps: [
    {
      action: "aws:runShellScript";
      name: "deploy";
      precondition: { StringEquals: ["platformType", "Linux"] };
      inputs: { runCommand: string[]; timeoutSeconds: string };
    },
  ];
}

/**
 * The repository root, found by walking up from `from` to the first directory with a
 * package.json. Compiled code runs from `dist/…`, so a `dist` directory is never the root.
 */
export function repoRoot(from: string = __dirname): string {
  let dir = path.resolve(from);
  for (;;) {
    if (path.basename(dir) !== "dist" && fs.existsSync(path.join(dir, "package.json"))) return dir;
    const up = path.dirname(dir);
    if (up === dir) throw new Error(`no package.json above ${from}`);
    dir = up;
  }
}

/** Reads the agent script byte for byte (as UTF-8 text). */
export function readAgentScript(rootDir: string = repoRoot()): string {
  const file = path.join(rootDir, AGENT_SCRIPT_PATH);
  try {
    return fs.readFileSync(file, "utf8");
  } catch (err) {
    throw new Error(`cannot read the deploy agent at ${file}: ${(err as Error).message}`, { cause: err });
  }
}

export function sha256Hex(text: string): string {
  return crypto.createHash("sha256").update(text, "utf8").digest("hex");
}

/**
 * The agent gzipped (deterministically: Node writes no name and a zero mtime in the header, so
 * the same script always gives the same document) as base64 in 76-column lines, the form
 * `base64 -d` reads from a here-document.
 */
export function gzipBase64Lines(text: string): string[] {
  const b64 = zlib.gzipSync(Buffer.from(text, "utf8"), { level: 9 }).toString("base64");
  const lines: string[] = [];
  for (let i = 0; i < b64.length; i += 76) lines.push(b64.slice(i, i + 76));
  return lines;
}

const HEREDOC_END = "ZCP_AGENT_BASE64";

/**
 * The shell lines that decode the embedded agent to a private temp file, check it, map the
 * `SSM_*` parameters to `ZCP_*` and run it with bash (SSM itself runs commands with `sh`,
 * and the agent is a bash script). The agent's exit code is the command's exit code.
 */
export function runCommandLines(script: string, pins?: DocumentPins): string[] {
  const sha = sha256Hex(script);
  // The app root is configuration, not a parameter: the sender cannot choose it. Checked
  // against the same safe-path pattern as the app dir before it is written into the script.
  const rootLine: string[] = [];
  if (pins) {
    if (!new RegExp(APP_DIR_PATTERN).test(pins.appRoot) || pins.appRoot.includes("..") || pins.appRoot.includes("'")) {
      throw new ConfigError("zcp:runtime.appRoot", `must be an absolute path of letters, digits and ._-/, got ${JSON.stringify(pins.appRoot)}`);
    }
    rootLine.push(`  ZCP_APP_ROOT='${pins.appRoot}' \\`);
  }
  const envLines = DEPLOY_PARAMETERS.map((p) => `  ${p.env}="$SSM_${p.name}" \\`);
  return [
    "set -eu",
    // Parameters are only ever read from the environment. An agent too old to provide them
    // gets a clear refusal (exit 2: rejected input, nothing touched) instead of a fallback
    // that would paste values into this script.
    "zcp_missing=''",
    ...DEPLOY_PARAMETERS.map((p) => `[ -n "\${SSM_${p.name}+x}" ] || zcp_missing="$zcp_missing ${p.name}"`),
    'if [ -n "$zcp_missing" ]; then',
    `  echo "zcp: parameters not passed as environment variables:$zcp_missing (SSM Agent ${MIN_SSM_AGENT_VERSION} or later is required)" >&2`,
    "  exit 2",
    "fi",
    'zcp_agent="$(mktemp)"',
    'zcp_gz="$(mktemp)"',
    `trap 'rm -f "$zcp_agent" "$zcp_gz"' EXIT`,
    // gzip before base64: the agent alone would outgrow SSM's 64 KB document limit as base64.
    `base64 -d > "$zcp_gz" <<'${HEREDOC_END}'`,
    ...gzipBase64Lines(script),
    HEREDOC_END,
    'gzip -dc < "$zcp_gz" > "$zcp_agent"',
    `if ! echo "${sha}  $zcp_agent" | sha256sum -c --status; then`,
    '  echo "zcp: the embedded agent did not decode intact" >&2',
    "  exit 2",
    "fi",
    "zcp_rc=0",
    ...rootLine,
    `  ZCP_ACTION="\${SSM_${ACTION_PARAMETER}:-deploy}" \\`,
    ...envLines,
    '  /bin/bash "$zcp_agent" || zcp_rc=$?',
    'exit "$zcp_rc"',
  ];
}

/**
 * The configured runtime the document is pinned to: the `appDir`, `appUser` and `service`
 * parameters accept exactly these values (their allowedPattern is built from them), and the
 * agent is told the app root. Whoever may send the document (the release role) can then
 * choose the version and artifact, never where it lands or whom it runs as.
 */
export interface DocumentPins {
  appDir: string;
  appUser: string;
  service: string;
  appRoot: string;
}

/** A regular expression that matches exactly `value`. */
export function exactPattern(value: string): string {
  return `^${value.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}$`;
}

export interface BuildDocumentOptions {
  /** The runtime the document's parameters are pinned to. @default unpinned (generic patterns) */
  pins?: DocumentPins;
  /** The agent script text. @default read from `shared/agent/zcp-agent.sh` under `rootDir` */
  script?: string;
  /** Repository root to read the agent from. @default found from this file's location */
  rootDir?: string;
  /** Default of the `executionTimeout` parameter (s); releases send their own. @default 3600 */
  executionTimeoutS?: number;
}

/** The deploy document's content (schema 2.2, JSON form). */
export function buildDeployDocument(options: BuildDocumentOptions = {}): DeployDocumentContent {
  const script = options.script ?? readAgentScript(options.rootDir);
  const parameters: Record<string, DocumentParameter> = {};
  const pinned: Partial<Record<string, string>> = options.pins
    ? { appDir: options.pins.appDir, appUser: options.pins.appUser, service: options.pins.service }
    : {};
  for (const p of DEPLOY_PARAMETERS) {
    const value = pinned[p.name];
    if (value !== undefined && !new RegExp(p.allowedPattern).test(value)) {
      throw new ConfigError(`zcp:runtime.${p.name === "appUser" ? "user" : p.name}`, `must match ${p.allowedPattern}, got ${JSON.stringify(value)}`);
    }
    parameters[p.name] = {
      type: "String",
      description: `${p.description} Passed to the agent as ${p.env}.${value !== undefined ? " Pinned to the configured value." : ""}`,
      allowedPattern: value !== undefined ? exactPattern(value) : p.allowedPattern,
      interpolationType: "ENV_VAR",
    };
  }
  const executionTimeout = String(options.executionTimeoutS ?? DEFAULT_EXECUTION_TIMEOUT_S);
  if (!new RegExp(EXECUTION_TIMEOUT_PATTERN).test(executionTimeout)) {
    throw new ConfigError("zcp:deploy.commandTimeoutS", `must be 30..172800 seconds, got ${executionTimeout}`);
  }
  parameters[ACTION_PARAMETER] = {
    type: "String",
    description: "What the agent does: deploy, or prepare-image (check the current release against its manifest and clear the instance's identity before an image is taken). Passed to the agent as ZCP_ACTION.",
    allowedPattern: ACTION_PATTERN,
    interpolationType: "ENV_VAR",
    default: "deploy",
  };
  parameters[EXECUTION_TIMEOUT_PARAMETER] = {
    type: "String",
    description: "Seconds one run may take before SSM stops the agent (SIGKILL to its process group).",
    allowedPattern: EXECUTION_TIMEOUT_PATTERN,
    default: executionTimeout,
  };
  const content: DeployDocumentContent = {
    schemaVersion: "2.2",
    description: `zcp deploy agent (${AGENT_SCRIPT_PATH}, sha256 ${sha256Hex(script)}).`,
    parameters,
    mainSteps: [
      {
        action: "aws:runShellScript",
        name: "deploy",
        precondition: { StringEquals: ["platformType", "Linux"] },
        inputs: { runCommand: runCommandLines(script, options.pins), timeoutSeconds: `{{ ${EXECUTION_TIMEOUT_PARAMETER} }}` },
      },
    ],
  };
  const size = Buffer.byteLength(JSON.stringify(content), "utf8");
  if (size > MAX_DOCUMENT_BYTES) {
    throw new Error(`the deploy document would be ${size} bytes; SSM accepts at most ${MAX_DOCUMENT_BYTES}`);
  }
  return content;
}

/**
 * SendCommand `Parameters` for the deploy document, from the agent's environment (for
 * example `agentEnvironment(params)` in deploy/transport.ts). Each value is checked against
 * its `allowedPattern` first, so a bad value fails here with its name rather than as an SSM
 * `InvalidParameters` error.
 */
export function sendCommandParameters(env: Readonly<Record<AgentEnvName, string> & { ZCP_ACTION?: string }>): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const p of DEPLOY_PARAMETERS) {
    const value = env[p.env];
    if (typeof value !== "string" || !new RegExp(p.allowedPattern).test(value)) {
      throw new ConfigError(p.env, `must match ${p.allowedPattern}, got ${JSON.stringify(value)}`);
    }
    out[p.name] = [value];
  }
  // Sent only when it is not the default, so deploys keep working with a document that
  // predates the parameter.
  const action = env.ZCP_ACTION;
  if (action !== undefined && action !== "deploy") {
    if (!new RegExp(ACTION_PATTERN).test(action)) throw new ConfigError("ZCP_ACTION", `must match ${ACTION_PATTERN}, got ${JSON.stringify(action)}`);
    out[ACTION_PARAMETER] = [action];
  }
  return out;
}
