/**
 * Parses the fixed CLI:
 *   zcp release  --env ENV --version VERSION [--source DIR] [--canary N] [--batch N|P%] [--skip-image]
 *   zcp rollback --env ENV [--to VERSION]
 *   zcp preview  --env ENV [--version VERSION]
 *   zcp status   --env ENV
 *   zcp history  --env ENV
 * plus `--json` on every command, and `zcp local down` to stop the local environment.
 * Every problem is a ConfigError naming the flag; nothing runs before parsing succeeded.
 */
import { ConfigError } from "../shared/errors.js";
import { ENV_RE, VERSION_RE } from "../shared/naming.js";

export type Command =
  | {
      name: "release";
      env: string;
      version: string;
      source?: string;
      canary?: number;
      batch?: string;
      skipImage: boolean;
      json: boolean;
    }
  | { name: "rollback"; env: string; to?: string; json: boolean }
  | { name: "preview"; env: string; version?: string; source?: string; json: boolean }
  | { name: "status"; env: string; json: boolean }
  | { name: "history"; env: string; json: boolean }
  | { name: "local-down"; json: boolean }
  | { name: "help" };

const FLAGS: Record<string, readonly string[]> = {
  release: ["--env", "--version", "--source", "--canary", "--batch", "--skip-image", "--json"],
  rollback: ["--env", "--to", "--json"],
  preview: ["--env", "--version", "--source", "--json"],
  status: ["--env", "--json"],
  history: ["--env", "--json"],
};
const BOOLEAN_FLAGS = new Set(["--skip-image", "--json"]);

export const USAGE = `usage:
  zcp release  --env ENV --version VERSION [--source DIR] [--canary N] [--batch N|P%] [--skip-image] [--json]
  zcp rollback --env ENV [--to VERSION] [--json]
  zcp preview  --env ENV [--version VERSION] [--json]
  zcp status   --env ENV [--json]
  zcp history  --env ENV [--json]
  zcp local down                      stop the local environment's emulator and instances

VERSION matches ^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$. ENV is "local" (embedded, no AWS account)
or a foundation stack name (dev, prod, ...).
exit codes: 0 success, 1 release failed (rolled back), 2 bad input or configuration (nothing
changed), 3 another release holds the lock`;

/** Refuses control characters anywhere: they can only be an attack or an accident. */
function assertPrintable(flag: string, value: string): void {
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(value)) {
    throw new ConfigError(flag, `must not contain control characters (got ${JSON.stringify(value)})`);
  }
}

export function parseArgs(argv: readonly string[]): Command {
  const [cmd, ...rest] = argv;
  if (cmd === undefined || cmd === "help" || cmd === "--help" || cmd === "-h") return { name: "help" };
  if (cmd === "local") {
    if (rest[0] === "down") return { name: "local-down", json: rest.includes("--json") };
    throw new ConfigError("local", `unknown subcommand ${JSON.stringify(rest[0] ?? "")}; expected "down"`);
  }
  const allowed = FLAGS[cmd];
  if (!allowed) throw new ConfigError("command", `unknown command ${JSON.stringify(cmd)}\n${USAGE}`);

  const values = new Map<string, string>();
  const bools = new Set<string>();
  for (let i = 0; i < rest.length; i++) {
    const arg = rest[i] ?? "";
    const eq = arg.indexOf("=");
    const flag = arg.startsWith("--") && eq > 0 ? arg.slice(0, eq) : arg;
    if (!flag.startsWith("--")) throw new ConfigError("arguments", `unexpected argument ${JSON.stringify(arg)}`);
    if (!allowed.includes(flag)) throw new ConfigError(flag, `is not a flag of "zcp ${cmd}"`);
    if (BOOLEAN_FLAGS.has(flag)) {
      if (eq > 0) throw new ConfigError(flag, "takes no value");
      bools.add(flag);
      continue;
    }
    let value: string | undefined;
    if (eq > 0) value = arg.slice(eq + 1);
    else {
      value = rest[i + 1];
      i++;
    }
    if (value === undefined || (value.startsWith("--") && eq < 0)) throw new ConfigError(flag, "needs a value");
    if (values.has(flag)) throw new ConfigError(flag, "given twice");
    assertPrintable(flag, value);
    values.set(flag, value);
  }

  const env = values.get("--env");
  if (env === undefined) throw new ConfigError("--env", "is required");
  if (!ENV_RE.test(env)) throw new ConfigError("--env", `must match ${ENV_RE.source}, got ${JSON.stringify(env)}`);
  const json = bools.has("--json");

  const version = (flag: string): string | undefined => {
    const v = values.get(flag);
    if (v !== undefined && !VERSION_RE.test(v)) {
      throw new ConfigError(flag, `must match ${VERSION_RE.source}, got ${JSON.stringify(v)}`);
    }
    return v;
  };

  switch (cmd) {
    case "release": {
      const v = version("--version");
      if (v === undefined) throw new ConfigError("--version", "is required");
      const out: Extract<Command, { name: "release" }> = {
        name: "release",
        env,
        version: v,
        skipImage: bools.has("--skip-image"),
        json,
      };
      const source = values.get("--source");
      if (source !== undefined) {
        if (source.length === 0) throw new ConfigError("--source", "must not be empty");
        out.source = source;
      }
      const canary = values.get("--canary");
      if (canary !== undefined) {
        if (!/^(0|[1-9][0-9]{0,3})$/.test(canary)) {
          throw new ConfigError("--canary", `must be a whole number 0..9999, got ${JSON.stringify(canary)}`);
        }
        out.canary = Number(canary);
      }
      const batch = values.get("--batch");
      if (batch !== undefined) {
        out.batch = validateBatchSpec("--batch", batch);
      }
      return out;
    }
    case "rollback": {
      const to = version("--to");
      return to === undefined ? { name: "rollback", env, json } : { name: "rollback", env, to, json };
    }
    case "preview": {
      const v = version("--version");
      const source = values.get("--source");
      return {
        name: "preview",
        env,
        json,
        ...(v !== undefined ? { version: v } : {}),
        ...(source !== undefined ? { source } : {}),
      };
    }
    case "status":
      return { name: "status", env, json };
    default:
      return { name: "history", env, json };
  }
}

/** A batch is a count ("2") or a percentage of the fleet ("25%"). */
export function validateBatchSpec(field: string, spec: string): string {
  const m = /^([1-9][0-9]{0,3})(%?)$/.exec(spec);
  if (!m || (m[2] === "%" && Number(m[1]) > 100)) {
    throw new ConfigError(field, `must be 1..100% or a count, got ${JSON.stringify(spec)}`);
  }
  return spec;
}
