/**
 * The command line's grammar, on node:util's `parseArgs`:
 *   zcp build    --env ENV --version VERSION [--source DIR] [--python-platform TAG] [--python-version X.Y]
 *   zcp release  --env ENV --version VERSION [--source DIR | --prebuilt] [--canary N] [--batch N|P%] [--skip-image]
 *   zcp promote  --from ENV --to ENV --version VERSION
 *   zcp rollback --env ENV [--to VERSION]
 *   zcp preview  --env ENV [--version VERSION] [--source DIR]
 *   zcp status   --env ENV
 *   zcp history  --env ENV
 *   zcp config get KEY --env ENV
 *   zcp state copy --env ENV --to DIR
 *   zcp local down
 * plus `--json` on every command, `--help` on every command and `zcp --version`.
 *
 * A command is one entry of `COMMANDS`: its options (each value checked by the rule in
 * `shared/rules.ts` that stack config uses too), its help text, and `toCommand`, which turns
 * the checked values into the typed `Command` the CLI runs. Every problem is a ConfigError
 * naming the flag; nothing runs before parsing succeeded.
 */
import { parseArgs as parseNodeArgs } from "node:util";
import { ConfigError } from "../shared/errors.js";
import { RULES, checkValue } from "../shared/rules.js";
import { ENV_PATTERN, VERSION_PATTERN } from "../shared/naming.js";

export type Command =
  | {
      name: "release";
      env: string;
      version: string;
      source?: string;
      canary?: number;
      batch?: string;
      skipImage: boolean;
      /** Deploy the artifact `zcp build` (or `zcp promote`) put in the bucket; build nothing. */
      prebuilt: boolean;
      json: boolean;
    }
  | { name: "build"; env: string; version: string; source?: string; pythonPlatform?: string; pythonVersion?: string; json: boolean }
  | { name: "promote"; from: string; to: string; version: string; fromBucket?: string; json: boolean }
  | { name: "rollback"; env: string; to?: string; json: boolean }
  | { name: "preview"; env: string; version?: string; source?: string; json: boolean }
  | { name: "status"; env: string; json: boolean }
  | { name: "history"; env: string; json: boolean }
  /** One value of a foundation stack's validated config, e.g. `github.sessionDurationS`. */
  | { name: "config-get"; env: string; key: string; json: boolean }
  /** A throwaway copy of a foundation stack's state, for a preview that decrypts nothing. */
  | { name: "state-copy"; env: string; to: string; json: boolean }
  | { name: "local-down"; json: boolean }
  /** `zcp --help`, `zcp help [COMMAND]`, `zcp COMMAND --help`: `topic` is the command's key. */
  | { name: "help"; topic?: string }
  | { name: "version" };

export interface OptionSpec {
  /** A switch (`--skip-image`) or a flag that takes a value (`--env dev`). */
  type: "boolean" | "string";
  /** The value's placeholder in help, like `ENV`. */
  placeholder?: string;
  required?: boolean;
  /** One line of help. */
  help: string;
  /** Checks and converts the value (throws a ConfigError naming the flag). */
  check?: (flag: string, value: string) => string | number;
}

/** What a command's options parsed to: strings and numbers by flag name, switches as booleans. */
export type OptionValues = Readonly<Record<string, string | number | boolean | undefined>>;

/** A command's one word that is not a flag, like the KEY of `zcp config get KEY`. */
export interface ArgumentSpec {
  /** The value's name in help and in the values handed to `toCommand`, like `KEY`. */
  placeholder: string;
  help: string;
  /** Checks the value (throws a ConfigError naming the argument). */
  check: (name: string, value: string) => string;
}

export interface CommandSpec {
  /** The words after `zcp`, e.g. `release` or `local down`. */
  words: string;
  summary: string;
  /** A required argument after the command's words. @default none: any stray word is refused */
  argument?: ArgumentSpec;
  options: Readonly<Record<string, OptionSpec>>;
  /** Builds the command from checked values; may add rules that relate options to each other. */
  toCommand: (values: OptionValues) => Command;
}

const checkEnv = (flag: string, v: string) => checkValue(flag, RULES.environment, v);
const checkVersion = (flag: string, v: string) => checkValue(flag, RULES.version, v);
const checkCanary = (flag: string, v: string) => checkValue(flag, RULES.canary, v);
const checkBatch = (flag: string, v: string) => checkValue(flag, RULES.batch, v);
const checkSource = (flag: string, v: string) => {
  if (v.length === 0) throw new ConfigError(flag, "must not be empty");
  return v;
};

const checkPythonPlatform = (flag: string, v: string) => {
  if (!/^[A-Za-z0-9_.]{1,64}$/.test(v)) throw new ConfigError(flag, `must be a wheel platform tag such as manylinux2014_x86_64, got ${JSON.stringify(v)}`);
  return v;
};
const checkPythonVersion = (flag: string, v: string) => {
  if (!/^3(\.[0-9]{1,2}){0,2}$/.test(v)) throw new ConfigError(flag, `must be a Python 3 version such as 3.12, got ${JSON.stringify(v)}`);
  return v;
};

// S3 bucket naming rules (Amazon S3 User Guide, "General purpose bucket naming rules").
const checkBucket = (flag: string, v: string) => {
  if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(v) || v.includes("..")) throw new ConfigError(flag, `must be an S3 bucket name, got ${JSON.stringify(v)}`);
  return v;
};

/** A config key as `section.field` (the `zcp:` prefix optional): names, dots, no expressions. */
const CONFIG_KEY_RE = /^(?:zcp:)?[A-Za-z][A-Za-z0-9]{0,63}(?:\.[A-Za-z][A-Za-z0-9]{0,63}){0,3}$/;
const checkConfigKey = (name: string, v: string) => {
  if (!CONFIG_KEY_RE.test(v)) throw new ConfigError(name, `must be a config key like github.sessionDurationS, got ${JSON.stringify(v)}`);
  return v.replace(/^zcp:/, "");
};

const ENV: OptionSpec = { type: "string", placeholder: "ENV", required: true, help: 'environment: "local" or a foundation stack (dev, prod, ...)', check: checkEnv };
const JSON_OUTPUT: OptionSpec = { type: "boolean", help: "print the result as JSON on stdout (progress goes to stderr)" };

const str = (v: OptionValues, key: string): string | undefined => (typeof v[key] === "string" ? (v[key] as string) : undefined);
const num = (v: OptionValues, key: string): number | undefined => (typeof v[key] === "number" ? (v[key] as number) : undefined);
const bool = (v: OptionValues, key: string): boolean => v[key] === true;

/** Every command the CLI knows, in the order help lists them. Adding a command is adding an entry. */
export const COMMANDS: readonly CommandSpec[] = [
  {
    words: "build",
    summary: "build VERSION once (app, dependencies resolved offline-installable, manifest) and upload it",
    options: {
      env: ENV,
      version: { type: "string", placeholder: "VERSION", required: true, help: `the artifact's version (${VERSION_PATTERN})`, check: checkVersion },
      source: { type: "string", placeholder: "DIR", help: "directory to build; default: the configured source", check: checkSource },
      "python-platform": { type: "string", placeholder: "TAG", help: "wheel platform of the fleet, e.g. manylinux2014_x86_64; default: the builder's", check: checkPythonPlatform },
      "python-version": { type: "string", placeholder: "X.Y", help: "Python version of the fleet, e.g. 3.12; default: the builder's", check: checkPythonVersion },
      json: JSON_OUTPUT,
    },
    toCommand: (v) => {
      const source = str(v, "source");
      const pythonPlatform = str(v, "python-platform");
      const pythonVersion = str(v, "python-version");
      return {
        name: "build",
        env: str(v, "env")!,
        version: str(v, "version")!,
        json: bool(v, "json"),
        ...(source !== undefined ? { source } : {}),
        ...(pythonPlatform !== undefined ? { pythonPlatform } : {}),
        ...(pythonVersion !== undefined ? { pythonVersion } : {}),
      };
    },
  },
  {
    words: "release",
    summary: "release VERSION to an environment: canary, health checks, batches, image, latest pointer",
    options: {
      env: ENV,
      version: { type: "string", placeholder: "VERSION", required: true, help: `the release's version (${VERSION_PATTERN})`, check: checkVersion },
      source: { type: "string", placeholder: "DIR", help: "directory (or git subdirectory) to package; default: the configured source", check: checkSource },
      canary: { type: "string", placeholder: "N", help: "instances that get the release first, 0..100 (0 skips the canary); default: zcp:deploy.canary", check: checkCanary },
      batch: { type: "string", placeholder: "N|P%", help: "instances per batch after the canary: a count or 1..100%; default: zcp:deploy.batch", check: checkBatch },
      "skip-image": { type: "boolean", help: "do not bake an image or move the launch template" },
      prebuilt: { type: "boolean", help: "deploy the artifact zcp build or zcp promote uploaded for VERSION; build nothing" },
      json: JSON_OUTPUT,
    },
    toCommand: (v) => {
      const source = str(v, "source");
      const canary = num(v, "canary");
      const batch = str(v, "batch");
      if (source !== undefined && bool(v, "prebuilt")) throw new ConfigError("--prebuilt", "deploys an artifact already built; it takes no --source");
      return {
        name: "release",
        env: str(v, "env")!,
        version: str(v, "version")!,
        skipImage: bool(v, "skip-image"),
        prebuilt: bool(v, "prebuilt"),
        json: bool(v, "json"),
        ...(source !== undefined ? { source } : {}),
        ...(canary !== undefined ? { canary } : {}),
        ...(batch !== undefined ? { batch } : {}),
      };
    },
  },
  {
    words: "rollback",
    summary: "release an earlier version again (default: the one before the current release)",
    options: {
      env: ENV,
      to: { type: "string", placeholder: "VERSION", help: "the version to go back to; its artifact must still exist", check: checkVersion },
      json: JSON_OUTPUT,
    },
    toCommand: (v) => {
      const to = str(v, "to");
      return { name: "rollback", env: str(v, "env")!, json: bool(v, "json"), ...(to !== undefined ? { to } : {}) };
    },
  },
  {
    words: "promote",
    summary: "copy the exact artifact of VERSION from one environment's bucket to another's, sha256 verified",
    options: {
      from: { ...ENV, help: "environment the artifact was built or released in (e.g. dev)" },
      to: { ...ENV, help: "environment that gets the same bytes (e.g. prod)" },
      version: { type: "string", placeholder: "VERSION", required: true, help: `the version to promote (${VERSION_PATTERN})`, check: checkVersion },
      "from-bucket": {
        type: "string",
        placeholder: "BUCKET",
        help: "the --from environment's artifact bucket, read with the current session (its stack is then not opened: from another account's CI job)",
        check: checkBucket,
      },
      json: JSON_OUTPUT,
    },
    toCommand: (v) => {
      const from = str(v, "from")!;
      const to = str(v, "to")!;
      const fromBucket = str(v, "from-bucket");
      if (from === to) throw new ConfigError("--to", `must differ from --from (both are "${from}")`);
      return { name: "promote", from, to, version: str(v, "version")!, json: bool(v, "json"), ...(fromBucket !== undefined ? { fromBucket } : {}) };
    },
  },
  {
    words: "preview",
    summary: "show what a release would change, without changing anything",
    options: {
      env: ENV,
      version: { type: "string", placeholder: "VERSION", help: `version to preview (${VERSION_PATTERN}); default: a throwaway name`, check: checkVersion },
      source: { type: "string", placeholder: "DIR", help: "directory to package for the preview", check: checkSource },
      json: JSON_OUTPUT,
    },
    toCommand: (v) => {
      const version = str(v, "version");
      const source = str(v, "source");
      return {
        name: "preview",
        env: str(v, "env")!,
        json: bool(v, "json"),
        ...(version !== undefined ? { version } : {}),
        ...(source !== undefined ? { source } : {}),
      };
    },
  },
  {
    words: "status",
    summary: "version per instance, latest pointer, image and launch template version",
    options: { env: ENV, json: JSON_OUTPUT },
    toCommand: (v) => ({ name: "status", env: str(v, "env")!, json: bool(v, "json") }),
  },
  {
    words: "history",
    summary: "past releases, from the release stack's history",
    options: { env: ENV, json: JSON_OUTPUT },
    toCommand: (v) => ({ name: "history", env: str(v, "env")!, json: bool(v, "json") }),
  },
  {
    words: "config get",
    summary: "print one value of a foundation stack's validated config (read from Pulumi.ENV.yaml; no AWS call)",
    argument: { placeholder: "KEY", help: "the key, like github.sessionDurationS or zcp:deploy.batch", check: checkConfigKey },
    options: { env: { ...ENV, help: "the foundation stack (dev, prod, ...) whose Pulumi.ENV.yaml is read" }, json: JSON_OUTPUT },
    toCommand: (v) => ({ name: "config-get", env: str(v, "env")!, key: str(v, "KEY")!, json: bool(v, "json") }),
  },
  {
    words: "state copy",
    summary: "copy a foundation stack's state, decrypting nothing, into a throwaway file backend for a preview (CI's foundation previews)",
    options: {
      env: { ...ENV, help: "the foundation stack (dev, prod, ...), read from the backend `pulumi login` chose" },
      to: { type: "string", placeholder: "DIR", required: true, help: "a new or empty directory for the copy (backend/, passphrase, Pulumi.ENV.yaml)", check: checkSource },
      json: JSON_OUTPUT,
    },
    toCommand: (v) => ({ name: "state-copy", env: str(v, "env")!, to: str(v, "to")!, json: bool(v, "json") }),
  },
  {
    words: "local down",
    summary: "stop the local environment's emulator and instances",
    options: { json: JSON_OUTPUT },
    toCommand: (v) => ({ name: "local-down", json: bool(v, "json") }),
  },
];

export const EXIT_CODES_HELP = `exit codes:
  0   success
  1   release failed (switched instances were rolled back)
  2   bad input or configuration (nothing changed)
  3   another release holds the environment's lock
  70  unexpected error (a defect in zcp or its environment; rerun with ZCP_DEBUG=1 for details)`;

function usageLine(spec: CommandSpec): string {
  const parts = Object.entries(spec.options).map(([name, o]) => {
    const flag = o.type === "boolean" ? `--${name}` : `--${name} ${o.placeholder ?? "VALUE"}`;
    return o.required ? flag : `[${flag}]`;
  });
  if (spec.argument) parts.unshift(spec.argument.placeholder);
  return `zcp ${spec.words} ${parts.join(" ")}`.trimEnd();
}

/** `zcp --help`: every command on one line each. */
export const USAGE = `usage:
${COMMANDS.map((c) => `  ${usageLine(c)}`).join("\n")}
  zcp COMMAND --help                  help on one command
  zcp --version                       print zcp's version

commands:
${COMMANDS.map((c) => `  ${c.words.padEnd(10)} ${c.summary}`).join("\n")}

VERSION matches ${VERSION_PATTERN}. ENV matches ${ENV_PATTERN}: "local" (embedded, no AWS
account) or a foundation stack name (dev, prod, ...).
environment: NO_COLOR or TERM=dumb turn off colour and the live progress line.
${EXIT_CODES_HELP}`;

/** `zcp COMMAND --help`. */
export function commandHelp(words: string): string {
  const spec = COMMANDS.find((c) => c.words === words);
  if (!spec) return USAGE;
  const rows = Object.entries(spec.options).map(([name, o]) => {
    const flag = o.type === "boolean" ? `--${name}` : `--${name} ${o.placeholder ?? "VALUE"}`;
    return `  ${flag.padEnd(20)} ${o.help}${o.required ? " (required)" : ""}`;
  });
  if (spec.argument) rows.unshift(`  ${spec.argument.placeholder.padEnd(20)} ${spec.argument.help} (required)`);
  rows.push(`  ${"--help".padEnd(20)} show this help`);
  return `usage: ${usageLine(spec)}\n\n${spec.summary}\n\noptions:\n${rows.join("\n")}\n\n${EXIT_CODES_HELP}`;
}

/** Refuses control characters anywhere: they can only be an attack or an accident. */
function assertPrintable(flag: string, value: string): void {
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(value)) {
    throw new ConfigError(flag, `must not contain control characters (got ${JSON.stringify(value)})`);
  }
}

/** Finds the command whose words start `argv`; `local down` is two words. */
function findCommand(argv: readonly string[]): { spec: CommandSpec; rest: readonly string[] } | undefined {
  for (const spec of COMMANDS) {
    const words = spec.words.split(" ");
    if (words.every((w, i) => argv[i] === w)) return { spec, rest: argv.slice(words.length) };
  }
  return undefined;
}

const isHelpFlag = (a: string) => a === "--help" || a === "-h";

export function parseArgs(argv: readonly string[]): Command {
  const [first, second] = argv;
  if (first === undefined || isHelpFlag(first)) return { name: "help" };
  if (first === "--version" || first === "-V") return { name: "version" };
  if (first === "help") {
    const topic = argv.slice(1).join(" ");
    if (topic && !COMMANDS.some((c) => c.words === topic)) throw new ConfigError("command", `unknown command ${JSON.stringify(topic)}\n${USAGE}`);
    return topic ? { name: "help", topic } : { name: "help" };
  }
  const found = findCommand(argv);
  if (!found) {
    if (COMMANDS.some((c) => c.words.startsWith(`${first} `))) {
      const subs = COMMANDS.filter((c) => c.words.startsWith(`${first} `)).map((c) => JSON.stringify(c.words.split(" ")[1]));
      if (second !== undefined && isHelpFlag(second)) return { name: "help" };
      if (second === undefined) throw new ConfigError(first, `needs a subcommand; expected ${subs.join(" or ")}`);
      throw new ConfigError(first, `unknown subcommand ${JSON.stringify(second)}; expected ${subs.join(" or ")}`);
    }
    throw new ConfigError("command", `unknown command ${JSON.stringify(first)}\n${USAGE}`);
  }
  const { spec, rest } = found;
  // Help wins over everything else on the line, so `zcp release --help` always works.
  if (rest.some(isHelpFlag)) return { name: "help", topic: spec.words };
  return spec.toCommand(parseOptions(spec, rest));
}

function parseOptions(spec: CommandSpec, rest: readonly string[]): OptionValues {
  const options = Object.fromEntries(Object.entries(spec.options).map(([name, o]) => [name, { type: o.type }]));
  // Not strict: unknown flags, stray words and missing values come back as tokens, so each
  // gets a message naming it instead of node's generic wording.
  const { tokens } = parseNodeArgs({ args: [...rest], options, strict: false, allowPositionals: true, tokens: true });
  const values: Record<string, string | number | boolean> = {};
  const seen = new Set<string>();
  const argument = spec.argument;
  for (const t of tokens) {
    if (t.kind === "positional" && argument && values[argument.placeholder] === undefined) {
      assertPrintable(argument.placeholder, t.value);
      values[argument.placeholder] = argument.check(argument.placeholder, t.value);
      continue;
    }
    if (t.kind === "positional") throw new ConfigError("arguments", `unexpected argument ${JSON.stringify(t.value)}`);
    if (t.kind === "option-terminator") throw new ConfigError("arguments", 'unexpected argument "--"');
    const flag = t.rawName;
    if (!flag.startsWith("--")) throw new ConfigError("arguments", `unexpected argument ${JSON.stringify(flag)} (flags are spelled --name)`);
    const o = spec.options[t.name];
    if (!o) throw new ConfigError(flag, `is not a flag of "zcp ${spec.words}"`);
    if (seen.has(t.name)) throw new ConfigError(flag, "given twice");
    seen.add(t.name);
    if (o.type === "boolean") {
      if (t.value !== undefined) throw new ConfigError(flag, "takes no value");
      values[t.name] = true;
      continue;
    }
    // A value taken from the next word that looks like a flag means the value was forgotten.
    if (t.value === undefined || (t.inlineValue === false && t.value.startsWith("--"))) throw new ConfigError(flag, "needs a value");
    assertPrintable(flag, t.value);
    values[t.name] = o.check ? o.check(flag, t.value) : t.value;
  }
  if (argument && values[argument.placeholder] === undefined) throw new ConfigError(argument.placeholder, `is required: zcp ${spec.words} ${argument.placeholder}`);
  for (const [name, o] of Object.entries(spec.options)) {
    if (o.required && values[name] === undefined) throw new ConfigError(`--${name}`, "is required");
  }
  return values;
}
