/**
 * The engine work of one release, cut to what a release needs.
 *
 * Through the automation API as it comes, a release pays for six CLI runs besides `up`:
 * `pulumi version` (workspace creation), `stack select`, and after `up` the stack outputs
 * twice (plain and `--show-secrets`) and one page of history. None of them changes what the
 * release does:
 *
 * - the CLI's version only depends on the binary, so it is remembered next to the release
 *   workspace, keyed by the binary's path, size and modification time;
 * - every command the automation API runs names its stack with `--stack`, so selecting the
 *   stack only proves that it exists, which on a file backend its state file already proves;
 * - the stack's outputs arrive with the engine's own event for the stack resource
 *   (`resOutputsEvent` of `pulumi:pulumi:Stack`), so reading them back is not needed, and
 *   the history page `Stack.up()` reads is a summary the runner never uses.
 *
 * Anything here that cannot be decided (another backend, a cache miss, an outputs event that
 * never came) falls back to the automation API's own way, so it is only ever slower, never
 * different.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import {
  LocalWorkspace,
  PulumiCommand,
  Stack,
  type EngineEvent,
  type LocalWorkspaceOptions,
  type OutputMap,
  type PulumiFn,
  type UpOptions,
} from "@pulumi/pulumi/automation/index.js";

// ---------------------------------------------------------------- the CLI without `pulumi version`

interface CliRecord {
  binary: string;
  size: number;
  mtimeMs: number;
  version: string;
}

/** The first `pulumi` on PATH, as the automation API would run it. */
export function resolvePulumiBinary(pathEnv: string = process.env.PATH ?? ""): string | undefined {
  for (const dir of pathEnv.split(path.delimiter)) {
    if (!dir) continue;
    const candidate = path.join(dir, "pulumi");
    try {
      fs.accessSync(candidate, fs.constants.X_OK);
      return fs.realpathSync(candidate);
    } catch {
      continue;
    }
  }
  return undefined;
}

type SemVerCtor = new (v: string) => unknown;

/** The semver module the automation API itself compares versions with. */
function automationSemVer(): SemVerCtor {
  const sdk = require.resolve("@pulumi/pulumi/automation/index.js");
  return (require(require.resolve("semver", { paths: [path.dirname(sdk)] })) as { SemVer: SemVerCtor }).SemVer;
}

/**
 * A PulumiCommand for the CLI on `pathEnv` (the PATH the engine's commands run with). The
 * version is read once per CLI binary and kept in `cacheFile`; a different, moved or rebuilt
 * binary is asked again.
 */
export async function pulumiCommand(cacheFile: string, pathEnv?: string): Promise<PulumiCommand> {
  const binary = resolvePulumiBinary(pathEnv);
  const stat = binary ? fs.statSync(binary) : undefined;
  if (binary && stat) {
    try {
      const rec = JSON.parse(fs.readFileSync(cacheFile, "utf8")) as CliRecord;
      if (rec.binary === binary && rec.size === stat.size && rec.mtimeMs === stat.mtimeMs && typeof rec.version === "string") {
        const SemVer = automationSemVer();
        // PulumiCommand.get() is the public constructor and always runs `pulumi version`;
        // this builds the same object from the version that run printed last time.
        return Reflect.construct(PulumiCommand, ["pulumi", new SemVer(rec.version)]) as PulumiCommand;
      }
    } catch {
      // no record yet, or an unreadable one: ask the CLI
    }
  }
  const cmd = await PulumiCommand.get();
  const version = cmd.version?.toString();
  if (binary && stat && version) {
    const rec: CliRecord = { binary, size: stat.size, mtimeMs: stat.mtimeMs, version };
    fs.mkdirSync(path.dirname(cacheFile), { recursive: true });
    fs.writeFileSync(cacheFile, JSON.stringify(rec));
  }
  return cmd;
}

// ---------------------------------------------------------------- the stack without `stack select`

/** Where a file backend keeps a project stack's state (plain or gzip-compressed). */
export function fileBackendStackExists(backendDir: string, project: string, stack: string): boolean {
  const dir = path.join(backendDir, ".pulumi", "stacks", project);
  return fs.existsSync(path.join(dir, `${stack}.json`)) || fs.existsSync(path.join(dir, `${stack}.json.gz`));
}

export interface OpenStackOptions extends LocalWorkspaceOptions {
  stackName: string;
  program: PulumiFn;
  /** Set for a `file://` backend: the stack's existence is read from its state file. */
  fileBackend?: { dir: string; project: string };
}

/**
 * The release stack if it exists, else undefined. On a file backend nothing runs: the state
 * file says whether it exists and no command needs it selected.
 */
export async function selectExistingStack(opts: OpenStackOptions): Promise<Stack | undefined> {
  const { stackName, fileBackend, ...wsOpts } = opts;
  const ws = await LocalWorkspace.create(wsOpts);
  if (fileBackend) {
    if (!fileBackendStackExists(fileBackend.dir, fileBackend.project, stackName)) return undefined;
    // Stack.select() calls the workspace's selectStack, whose one effect besides the check above
    // is to make this stack the folder's current one; every command passes --stack instead.
    ws.selectStack = async () => undefined;
  }
  return Stack.select(stackName, ws);
}

// ---------------------------------------------------------------- `up` without the read-back

const STACK_TYPE = "pulumi:pulumi:Stack";

/** The stack's outputs from an engine event, when the event is the stack resource's. */
export function stackOutputsFromEvent(e: EngineEvent): OutputMap | undefined {
  const m = e.resOutputsEvent?.metadata;
  if (!m || m.type !== STACK_TYPE) return undefined;
  const outs = (m.new?.outputs ?? {}) as Record<string, unknown>;
  const map: OutputMap = {};
  for (const [k, value] of Object.entries(outs)) map[k] = { value, secret: false };
  return map;
}

/**
 * Runs `up` and returns the stack outputs from the engine's event stream. The release stack
 * has no secret outputs (see deploy/steps/types.ts), so the plain values are the values.
 */
export async function upWithoutReadBack(stack: Stack, opts: UpOptions): Promise<{ outputs: OutputMap }> {
  let captured: OutputMap | undefined;
  const readOutputs = stack.outputs.bind(stack);
  const readInfo = stack.info.bind(stack);
  stack.outputs = async () => captured ?? (await readOutputs());
  stack.info = async () => undefined;
  try {
    const onEvent = opts.onEvent;
    const result = await stack.up({
      ...opts,
      onEvent: (e) => {
        captured = stackOutputsFromEvent(e) ?? captured;
        onEvent?.(e);
      },
    });
    return { outputs: result.outputs };
  } finally {
    stack.outputs = readOutputs;
    stack.info = readInfo;
  }
}
