/**
 * The agent tests' harness: local-fleet instances (each with its own real supervisord) in a
 * temporary root, the app user, snapshots of an app dir, and artifact uploads to the
 * emulator.
 *
 *   const fleet = new FleetHarness("zcp-agent-test");   // in before()
 *   const inst = await fleet.add();                      // a started instance
 *   await fleet.stopAll(); fleet.remove();               // in after()
 */
import { execFileSync, spawn } from "node:child_process";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { CreateBucketCommand, PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import {
  agentInstanceEnv,
  agentParamsFor,
  agentScriptPath,
  createInstance,
  instanceStateDir,
  runAgent,
  startSupervisor,
  stopSupervisor,
  type AgentRun,
  type LocalInstance,
} from "../../deploy/local/fleet.js";
import { agentEnvironment, type AgentParams } from "../../deploy/transport.js";
import { freePort } from "./emulator.js";
import type { BuiltRelease } from "./releases.js";

export const TEST_APP = "zcp-example";
/** The dedicated user the app runs as when the tests run as root. */
export const ROOT_APP_USER = "zcp-app";

export function isRoot(): boolean {
  return typeof process.getuid === "function" && process.getuid() === 0;
}

/**
 * The user the example app runs as: as root, a dedicated system user (created when missing,
 * so ownership and user switching are really exercised); otherwise the current user.
 */
export function testAppUser(): string {
  if (!isRoot()) return os.userInfo().username;
  try {
    execFileSync("id", ["-u", ROOT_APP_USER], { stdio: "ignore" });
  } catch {
    execFileSync("useradd", ["--system", "--no-create-home", "--shell", "/usr/sbin/nologin", ROOT_APP_USER], {
      stdio: "ignore",
    });
  }
  return ROOT_APP_USER;
}

export function uidOf(user: string): number {
  return Number.parseInt(execFileSync("id", ["-u", user], { encoding: "utf8" }).trim(), 10);
}

/** A temporary directory the app user can traverse (mkdtemp makes 0700 directories). */
export function makeTempRoot(prefix: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `${prefix}-`));
  fs.chmodSync(dir, 0o755);
  return dir;
}

export function randomInstanceId(): string {
  return `i-0${crypto.randomBytes(8).toString("hex")}`;
}

export class FleetHarness {
  readonly root: string;
  readonly appUser: string;
  readonly instances: LocalInstance[] = [];

  constructor(prefix: string) {
    this.root = makeTempRoot(prefix);
    this.appUser = testAppUser();
  }

  /** A new instance with its own port and a running supervisord. */
  async add(id: string = randomInstanceId()): Promise<LocalInstance> {
    const inst = createInstance(this.root, id, { port: await freePort(), appUser: this.appUser, service: "app" });
    this.instances.push(inst);
    await startSupervisor(inst);
    return inst;
  }

  async stopAll(): Promise<void> {
    for (const inst of this.instances) await stopSupervisor(inst);
  }

  remove(): void {
    fs.rmSync(this.root, { recursive: true, force: true });
  }
}

/**
 * A FleetHarness for the enclosing `describe`: made when the suite is defined, its instances
 * stopped and its folder removed after the suite's last test (skipped suites included).
 */
export function fleetForSuite(prefix: string): FleetHarness {
  const fleet = new FleetHarness(prefix);
  after(async () => {
    await fleet.stopAll();
    fleet.remove();
  });
  return fleet;
}

/** Agent parameters for deploying `release` (a file artifact unless `artifact` is given). */
export function paramsFor(
  inst: LocalInstance,
  release: BuiltRelease,
  overrides: Partial<AgentParams> = {},
): AgentParams {
  return agentParamsFor(inst, {
    app: TEST_APP,
    version: release.version,
    artifact: release.path,
    sha256: release.sha256,
    healthTimeoutS: 10,
    keepReleases: 3,
    ...overrides,
  });
}

/** Deploys and fails with the agent's output when the exit code is not the expected one. */
export async function deployExpecting(
  inst: LocalInstance,
  params: AgentParams,
  exitCode: number,
  env: Record<string, string> = {},
): Promise<AgentRun> {
  const run = await runAgent(inst, { ...agentEnvironment(params), ...env }, { timeoutMs: 90000 });
  if (run.exitCode !== exitCode) {
    throw new Error(
      `agent exited ${run.exitCode}, expected ${exitCode}\n--- stdout\n${run.stdout}\n--- stderr\n${run.stderr}`,
    );
  }
  return run;
}

/**
 * Every path under `dir` with its type, mode, owner, size, mtime and link target; undefined
 * when `dir` does not exist. Two equal snapshots mean nothing in the tree changed.
 */
export function snapshotTree(dir: string): Map<string, string> | undefined {
  if (!fs.existsSync(dir)) return undefined;
  const out = new Map<string, string>();
  const walk = (p: string) => {
    const st = fs.lstatSync(p);
    const rel = path.relative(dir, p) || ".";
    const link = st.isSymbolicLink() ? ` -> ${fs.readlinkSync(p)}` : "";
    out.set(rel, `${st.mode.toString(8)} ${st.uid}:${st.gid} ${st.size} ${st.mtimeMs}${link}`);
    if (st.isDirectory()) for (const name of fs.readdirSync(p)) walk(path.join(p, name));
  };
  walk(dir);
  return out;
}

/** Paths under `dir` (not following links) whose owner is not `uid`. */
export function pathsNotOwnedBy(dir: string, uid: number): string[] {
  const bad: string[] = [];
  const walk = (p: string) => {
    const st = fs.lstatSync(p);
    if (st.uid !== uid || (st.gid === 0 && uid !== 0)) bad.push(`${p} (${st.uid}:${st.gid})`);
    if (st.isDirectory()) for (const name of fs.readdirSync(p)) walk(path.join(p, name));
  };
  walk(dir);
  return bad;
}

/** Lines of the instance's deploy log, parsed. */
export function deployLog(inst: LocalInstance): Array<Record<string, unknown>> {
  const file = path.join(instanceStateDir(inst), "deploy.log");
  if (!fs.existsSync(file)) return [];
  return fs
    .readFileSync(file, "utf8")
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

export function releasesOn(inst: LocalInstance): string[] {
  const dir = path.join(inst.appDir, "releases");
  if (!fs.existsSync(dir)) return [];
  return fs
    .readdirSync(dir)
    .filter((n) => !n.startsWith("."))
    .sort();
}

export function currentTarget(inst: LocalInstance): string | undefined {
  try {
    return fs.readlinkSync(path.join(inst.appDir, "current"));
  } catch {
    return undefined;
  }
}

/** Uploads a file to the emulator's S3 and returns its s3:// URI. */
export async function uploadArtifact(
  env: Record<string, string>,
  bucket: string,
  key: string,
  file: string,
): Promise<string> {
  const endpoint = env.AWS_ENDPOINT_URL;
  if (!endpoint) throw new Error("uploadArtifact: AWS_ENDPOINT_URL (the emulator) is required");
  const s3 = new S3Client({
    endpoint,
    region: env.AWS_REGION ?? "us-east-1",
    forcePathStyle: true,
    credentials: { accessKeyId: env.AWS_ACCESS_KEY_ID ?? "", secretAccessKey: env.AWS_SECRET_ACCESS_KEY ?? "" },
  });
  try {
    await s3.send(new CreateBucketCommand({ Bucket: bucket })).catch((err: unknown) => {
      const name = (err as { name?: string }).name;
      if (name !== "BucketAlreadyOwnedByYou" && name !== "BucketAlreadyExists") throw err;
    });
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: fs.readFileSync(file) }));
  } finally {
    s3.destroy();
  }
  return `s3://${bucket}/${key}`;
}

/**
 * Starts the agent for `params` and SIGKILLs its whole process group the moment `current`
 * points at `releases/<version>`: what SSM's execution timeout or CancelCommand does (no trap
 * runs). Resolves with the link target seen when the kill landed.
 */
export async function killAgentAfterSwitch(inst: LocalInstance, params: AgentParams, timeoutMs = 60_000): Promise<string | undefined> {
  const child = spawn("bash", [agentScriptPath()], {
    env: { ...process.env, ...agentInstanceEnv(inst), ...agentEnvironment(params) },
    stdio: "ignore",
    detached: true,
  });
  const exited = new Promise<void>((resolve) => child.on("close", () => resolve()));
  const wanted = `releases/${params.version}`;
  const deadline = Date.now() + timeoutMs;
  try {
    while (currentTarget(inst) !== wanted) {
      if (Date.now() > deadline || child.exitCode !== null) throw new Error(`the agent never switched to ${wanted}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    return currentTarget(inst);
  } finally {
    if (child.pid !== undefined && child.exitCode === null) {
      try {
        process.kill(-child.pid, "SIGKILL");
      } catch {
        // already gone
      }
    }
    await exited;
  }
}
