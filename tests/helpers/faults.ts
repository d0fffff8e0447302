/**
 * What the fault and bad-input suites need beyond ZcpHarness: reading the local environment's
 * record, checking that every instance runs one whole release, following a release's progress
 * file closely enough to interrupt it at a chosen step, pausing or replacing the emulator the
 * environment started, filling an instance's disk, and a snapshot of everything a release
 * could change.
 */
import { execFileSync, type ChildProcess } from "node:child_process";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { S3Client, ListObjectVersionsCommand, PutObjectCommand } from "@aws-sdk/client-s3";
import { EC2Client, DescribeImagesCommand } from "@aws-sdk/client-ec2";
import type { ProgressRecord } from "../../deploy/progress.js";
import { expect } from "chai";
import { collect, type ZcpHarness, type ZcpRun } from "./zcp.js";

export const LOCAL_BUCKET = "zcp-local-artifacts";
export const LATEST_KEY = "releases/example/latest.json";

export interface LocalRecord {
  emulator?: { pid: number; port: number };
  instances: { instanceId: string; port: number; dir: string }[];
}

/** The local environment's own record of its emulator and instances. */
export function localRecord(h: ZcpHarness): LocalRecord {
  return JSON.parse(fs.readFileSync(path.join(h.workDir, "local", "state.json"), "utf8")) as LocalRecord;
}

/** Instance ids in the order the release uses them (the canary first). */
export function instanceIds(h: ZcpHarness): string[] {
  return localRecord(h)
    .instances.map((i) => i.instanceId)
    .sort();
}

/** ZCP_APP_DIR of one local instance. */
export function appDirOf(h: ZcpHarness, instanceId: string): string {
  const inst = localRecord(h).instances.find((i) => i.instanceId === instanceId);
  if (!inst) throw new Error(`no local instance ${instanceId}`);
  return path.join(inst.dir, "app");
}

/** The agent's deploy log of an instance, one parsed line per deploy. */
export function deployLog(h: ZcpHarness, instanceId: string): Record<string, unknown>[] {
  const file = path.join(path.dirname(appDirOf(h, instanceId)), "state", "deploy.log");
  if (!fs.existsSync(file)) return [];
  return fs
    .readFileSync(file, "utf8")
    .split("\n")
    .filter((l) => l.trim().startsWith("{"))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

async function answer(port: number): Promise<{ version: string; pid: number } | undefined> {
  try {
    const res = await fetch(`http://127.0.0.1:${port}/version`, { signal: AbortSignal.timeout(3000) });
    if (!res.ok) return undefined;
    return (await res.json()) as { version: string; pid: number };
  } catch {
    return undefined;
  }
}

/**
 * The release every instance runs, checked to be whole: `current` links to
 * `releases/<version>`, that directory is a complete, verified release (its checksum record and
 * its VERSION file naming the same version), and the app answers /version with it. Throws,
 * naming each instance that is half-switched, unhealthy or pointing at an incomplete release.
 */
export async function wholeReleases(h: ZcpHarness): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const problems: string[] = [];
  for (const inst of localRecord(h).instances) {
    const app = path.join(inst.dir, "app");
    let target: string;
    try {
      target = fs.readlinkSync(path.join(app, "current"));
    } catch (err) {
      problems.push(`${inst.instanceId}: no current link (${(err as Error).message})`);
      continue;
    }
    const m = /^releases\/([A-Za-z0-9][A-Za-z0-9._-]*)\/?$/.exec(target);
    if (!m?.[1]) {
      problems.push(`${inst.instanceId}: current -> ${target}, not releases/<version>`);
      continue;
    }
    const version = m[1];
    const dir = path.join(app, "releases", version);
    const shaFile = path.join(inst.dir, "state", "releases", `${version}.sha256`);
    const sha = fs.existsSync(shaFile) ? fs.readFileSync(shaFile, "utf8").trim() : "";
    const named = fs.existsSync(path.join(dir, "VERSION")) ? fs.readFileSync(path.join(dir, "VERSION"), "utf8").trim() : "";
    if (!/^[0-9a-f]{64}$/.test(sha)) problems.push(`${inst.instanceId}: releases/${version} has no verified checksum (incomplete release)`);
    if (named !== version) problems.push(`${inst.instanceId}: releases/${version}/VERSION says ${JSON.stringify(named)}`);
    const served = await answer(inst.port);
    if (served?.version !== version) {
      problems.push(`${inst.instanceId}: current is ${version} but /version answers ${served ? served.version : "nothing"}`);
    }
    out[inst.instanceId] = version;
  }
  if (problems.length > 0) throw new Error(`instances not on a whole release:\n  ${problems.join("\n  ")}`);
  return out;
}

/** Polls `cond` every `everyMs` until it holds; throws naming `what` after `timeoutMs`. */
export async function eventually<T>(what: string, cond: () => Promise<T | undefined> | T | undefined, timeoutMs: number, everyMs = 250): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await cond();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${(last as Error).message}` : ""}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

// ---------------------------------------------------------------- progress

type Trigger = { match: (r: ProgressRecord) => boolean; fire: (r: ProgressRecord) => void };

/**
 * Follows the progress files (`progress-*.jsonl`) of releases started after it was created.
 * Files are read through descriptors kept open, so the records of a runner that removes its
 * file at the end are still read in full. Triggers run synchronously inside the poll, so a
 * signal sent from one lands within milliseconds of the record being written.
 */
export class ProgressWatcher {
  readonly records: ProgressRecord[] = [];
  private readonly dir: string;
  private readonly ignored: Set<string>;
  private readonly files = new Map<string, { fd: number; offset: number; rest: string }>();
  private triggers: Trigger[] = [];
  private timer: NodeJS.Timeout | undefined;

  constructor(h: ZcpHarness, everyMs = 5) {
    this.dir = path.join(h.workDir, "release", "local");
    // Files of earlier, killed runners stay behind; only new releases count.
    this.ignored = new Set(this.list());
    this.timer = setInterval(() => this.poll(), everyMs);
  }

  private list(): string[] {
    try {
      return fs.readdirSync(this.dir).filter((f) => f.startsWith("progress-") && f.endsWith(".jsonl"));
    } catch {
      return [];
    }
  }

  /** Runs `fire` once, for the first record that matches. */
  once(match: (r: ProgressRecord) => boolean, fire: (r: ProgressRecord) => void): void {
    const seen = this.records.find(match);
    if (seen) {
      fire(seen);
      return;
    }
    this.triggers.push({ match, fire });
  }

  /** Resolves with the first record that matches. */
  async next(what: string, match: (r: ProgressRecord) => boolean, timeoutMs: number): Promise<ProgressRecord> {
    return await eventually(what, () => this.records.find(match), timeoutMs, 20);
  }

  poll(): void {
    for (const name of this.list()) {
      if (this.ignored.has(name) || this.files.has(name)) continue;
      try {
        this.files.set(name, { fd: fs.openSync(path.join(this.dir, name), "r"), offset: 0, rest: "" });
      } catch {
        // removed before it could be opened: a release that ended at once
      }
    }
    for (const f of this.files.values()) {
      const buf = Buffer.alloc(65536);
      for (;;) {
        const n = fs.readSync(f.fd, buf, 0, buf.length, f.offset);
        if (n <= 0) break;
        f.offset += n;
        f.rest += buf.subarray(0, n).toString("utf8");
      }
      const lines = f.rest.split("\n");
      f.rest = lines.pop() ?? "";
      for (const line of lines) {
        if (!line.trim()) continue;
        const rec = JSON.parse(line) as ProgressRecord;
        this.records.push(rec);
        for (const t of [...this.triggers]) {
          if (t.match(rec)) {
            this.triggers = this.triggers.filter((x) => x !== t);
            t.fire(rec);
          }
        }
      }
    }
  }

  /** Reads what is left and closes every file. */
  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.poll();
    for (const f of this.files.values()) fs.closeSync(f.fd);
    this.files.clear();
  }

  /** `Step:state` of every step record, in the order written. */
  steps(): string[] {
    return this.records.flatMap((r) => (r.kind === "step" ? [`${r.step}:${r.state}`] : []));
  }
}

export const isStep = (step: string, state: string) => (r: ProgressRecord) => r.kind === "step" && r.step === step && r.state === state;

// ---------------------------------------------------------------- processes

interface ProcStat {
  state: string;
  /** The setsid id: the pid of the process that called setsid(2) for it or an ancestor. */
  sid: number;
}

function procStat(pid: number): ProcStat | undefined {
  try {
    const text = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name may hold spaces and parentheses; the fields after its last ")" do not.
    const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
    return { state: fields[0] ?? "?", sid: Number(fields[3]) };
  } catch {
    return undefined;
  }
}

/** Every process (zombies included) started under the runner, found by its setsid id. */
export function runnerProcesses(runnerPid: number): number[] {
  return fs
    .readdirSync("/proc")
    .filter((d) => /^[0-9]+$/.test(d))
    .map(Number)
    .filter((pid) => procStat(pid)?.sid === runnerPid);
}

/**
 * Kills a runner the harness spawned, the way a lost machine or a killed CI job would: the
 * runner and every process under it. The harness starts the runner detached, which calls
 * setsid(2), so everything the runner starts carries the runner's pid as its setsid id. That
 * reaches wider than the runner's process group on purpose: the engine starts each
 * dynamic-provider host in a process group of its own, so killing only the runner's group
 * leaves the host finishing the step it was in, against an engine that is gone. Agents and
 * supervisord daemons call setsid themselves and are not touched, as on a real instance.
 */
export function killRunner(runnerPid: number | undefined): void {
  if (!runnerPid) throw new Error("the runner has no pid");
  for (const pid of runnerProcesses(runnerPid)) {
    try {
      process.kill(pid, "SIGKILL");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ESRCH") throw err;
    }
  }
}

/**
 * Waits until every process under the runner is gone and reaped. Processes orphaned by the
 * kill are reaped by the init process, which may take seconds; until then a lock's holder
 * still looks alive to `kill(pid, 0)`.
 */
export async function waitRunnerGone(runnerPid: number | undefined, timeoutMs = 30000): Promise<void> {
  if (!runnerPid) return;
  await eventually(`the processes of runner ${runnerPid} to be reaped`, () => (runnerProcesses(runnerPid).length === 0 ? true : undefined), timeoutMs, 100);
}

function gone(pid: number): boolean {
  // A zombie still answers kill(0); its state in /proc says it is dead.
  const stat = procStat(pid);
  return stat === undefined || stat.state === "Z" || stat.state === "X";
}

/**
 * The emulator this test's local environment started and recorded in its state file. Every
 * signal is sent to that recorded pid only, after checking it still is that emulator.
 */
export class RecordedEmulator {
  readonly pid: number;
  readonly port: number;

  constructor(h: ZcpHarness) {
    const emu = localRecord(h).emulator;
    if (!emu) throw new Error("the local environment recorded no emulator");
    this.pid = emu.pid;
    this.port = emu.port;
    const cmdline = fs.readFileSync(`/proc/${emu.pid}/cmdline`, "utf8").split("\0");
    if (!cmdline.some((a) => a.endsWith("moto_server")) || !cmdline.includes(String(emu.port))) {
      throw new Error(`pid ${emu.pid} is not the emulator on port ${emu.port}: ${cmdline.join(" ")}`);
    }
  }

  /** Freezes it: requests in flight wait, nothing is answered until `resume`. */
  pause(): void {
    process.kill(this.pid, "SIGSTOP");
  }

  resume(): void {
    if (!gone(this.pid)) process.kill(this.pid, "SIGCONT");
  }

  async kill(): Promise<void> {
    process.kill(this.pid, "SIGKILL");
    await eventually(`emulator pid ${this.pid} to exit`, () => (gone(this.pid) ? true : undefined), 10000, 50);
  }
}

// ---------------------------------------------------------------- disk

export class MountUnavailable extends Error {}

/**
 * Makes `dir` a full file system holding what it held: a tmpfs mounted over it, the old
 * contents copied in, the rest of its space taken by a filler file. Returns the undo, which
 * unmounts (lazily if something still holds it) so the original contents reappear unchanged.
 * Throws MountUnavailable, with the reason, when this process may not mount.
 */
export function fillDirectory(dir: string): () => void {
  const copy = fs.mkdtempSync(path.join(os.tmpdir(), "zcp-full-disk-"));
  fs.cpSync(dir, copy, { recursive: true, verbatimSymlinks: true });
  const bytes = Math.max(1 << 20, 4 * du(copy));
  try {
    execFileSync("mount", ["-t", "tmpfs", "-o", `size=${bytes},mode=0755`, "tmpfs", dir], { stdio: "pipe" });
  } catch (err) {
    fs.rmSync(copy, { recursive: true, force: true });
    const stderr = (err as { stderr?: Buffer }).stderr?.toString().trim();
    throw new MountUnavailable(`mount -t tmpfs over ${dir} failed: ${stderr || (err as Error).message}`);
  }
  const undo = () => {
    try {
      execFileSync("umount", [dir], { stdio: "pipe" });
    } catch {
      execFileSync("umount", ["-l", dir], { stdio: "pipe" });
    }
    fs.rmSync(copy, { recursive: true, force: true });
  };
  try {
    fs.cpSync(copy, dir, { recursive: true, verbatimSymlinks: true });
    const fd = fs.openSync(path.join(dir, ".filler"), "w");
    try {
      const chunk = Buffer.alloc(4096);
      for (;;) fs.writeSync(fd, chunk);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOSPC") throw err;
    } finally {
      fs.closeSync(fd);
    }
    return undo;
  } catch (err) {
    undo();
    throw err;
  }
}

function du(dir: string): number {
  let total = 0;
  for (const e of fs.readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) total += fs.statSync(path.join(e.parentPath, e.name)).size + 4096;
  }
  return total;
}

// ---------------------------------------------------------------- AWS side

function clients(h: ZcpHarness) {
  const common = {
    region: "us-east-1",
    endpoint: h.endpoint(),
    // The emulator's placeholder pair; it accepts any.
    credentials: { accessKeyId: "testing", secretAccessKey: "testing" },
  };
  return { s3: new S3Client({ ...common, forcePathStyle: true }), ec2: new EC2Client(common) };
}

/** Writes latest.json as another writer would, without any condition. */
export async function overwriteLatest(h: ZcpHarness, body: Record<string, unknown>): Promise<void> {
  const { s3, ec2 } = clients(h);
  try {
    await s3.send(new PutObjectCommand({ Bucket: LOCAL_BUCKET, Key: LATEST_KEY, Body: `${JSON.stringify(body, null, 2)}\n`, ContentType: "application/json" }));
  } finally {
    s3.destroy();
    ec2.destroy();
  }
}

export interface WorldSnapshot {
  /** Every object version in the bucket: key, version id, ETag. */
  objects: string[];
  /** Every zcp image: id and state. */
  images: string[];
  /** The image parameter the launch template resolves: what new instances boot. */
  template: { version: number; imageId: string };
  /** Per instance: the version /version answers and the app's pid (a restart changes it). */
  apps: Record<string, string>;
  /** Per instance: deploy-log lines (an agent run appends one). */
  deploys: Record<string, number>;
  /** Every file of the release stack's state backend, with a digest of its content. */
  stackState: string[];
}

/** Everything a release could change, read without changing anything. */
export async function snapshotWorld(h: ZcpHarness): Promise<WorldSnapshot> {
  const { s3, ec2 } = clients(h);
  try {
    const listed = await s3.send(new ListObjectVersionsCommand({ Bucket: LOCAL_BUCKET }));
    const objects = [...(listed.Versions ?? []), ...(listed.DeleteMarkers ?? [])].map((v) => `${v.Key}@${v.VersionId}@${"ETag" in v ? v.ETag : "delete-marker"}`).sort();
    const described = await ec2.send(new DescribeImagesCommand({ Owners: ["self"] }));
    const images = (described.Images ?? []).map((i) => `${i.ImageId}:${i.State}`).sort();
    const apps: Record<string, string> = {};
    const deploys: Record<string, number> = {};
    for (const inst of localRecord(h).instances) {
      const a = await answer(inst.port);
      apps[inst.instanceId] = a ? `${a.version} pid ${a.pid}` : "not answering";
      deploys[inst.instanceId] = deployLog(h, inst.instanceId).length;
    }
    return { objects, images, template: await h.imageParameter(), apps, deploys, stackState: digestTree(path.join(h.workDir, "local", "pulumi-state")) };
  } finally {
    s3.destroy();
    ec2.destroy();
  }
}

function digestTree(root: string): string[] {
  if (!fs.existsSync(root)) return [];
  return fs
    .readdirSync(root, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile())
    .map((e) => {
      const file = path.join(e.parentPath, e.name);
      return `${path.relative(root, file)} ${crypto.createHash("sha256").update(fs.readFileSync(file)).digest("hex").slice(0, 16)}`;
    })
    .sort();
}

// ---------------------------------------------------------------- the fault suites' driver

/** The fleet's one whole release, latest.json and the image parameter, before a fault. */
export interface Steady {
  version: string;
  versions: Record<string, string>;
  latest: { body: Record<string, unknown>; etag: string } | undefined;
  template: { version: number; imageId: string };
}

/** A JavaScript stack frame in output: what an unreadable crash looks like. */
const STACK_FRAME = /^\s+at .+:\d+:\d+\)?$/m;

/** The run's stderr says all of `expected` and shows no stack trace. */
export function expectStderr(r: ZcpRun, ...expected: RegExp[]): void {
  for (const re of expected) expect(r.stderr, `stderr should match ${re}:\n${r.stderr}`).to.match(re);
  expect(r.stderr, `stderr shows a stack trace:\n${r.stderr}`).not.to.match(STACK_FRAME);
}

/**
 * What every fault case does on the shared environment `zcp`: read the steady state before a
 * fault, check that nothing changed after it, and run a release with a hand on its progress.
 */
export function faultDriver(zcp: ZcpHarness) {
  /** The fleet's whole release, latest.json and the image parameter; all instances must agree. */
  async function steady(): Promise<Steady> {
    const versions = await wholeReleases(zcp);
    const distinct = [...new Set(Object.values(versions))];
    expect(distinct, `the fleet should be on one release before a fault: ${JSON.stringify(versions)}`).to.have.length(1);
    return { version: distinct[0] as string, versions, latest: await zcp.latest(), template: await zcp.imageParameter() };
  }

  async function expectNothingChanged(before: Steady): Promise<void> {
    expect(await wholeReleases(zcp), "every instance back on the release it had").to.deep.equal(before.versions);
    expect((await zcp.latest())?.etag, "latest.json untouched").to.equal(before.latest?.etag);
    expect(await zcp.imageParameter(), "image parameter untouched").to.deep.equal(before.template);
  }

  /**
   * Starts a release and hands it to `during` with a watcher on its progress. Whatever happens,
   * the release is over when this returns: on an error it is killed, never left running into
   * the next case.
   */
  async function releaseWith(
    args: string[],
    env: Record<string, string>,
    during: (child: ChildProcess, watch: ProgressWatcher) => Promise<void>,
    limitMs = 240000,
  ): Promise<ZcpRun> {
    const watch = new ProgressWatcher(zcp);
    const child = zcp.spawn(["release", "--env", "local", ...args], env);
    const done = collect(child);
    let timer: NodeJS.Timeout | undefined;
    try {
      await during(child, watch);
      return await Promise.race([
        done,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`the release did not end within ${limitMs / 1000}s (it hangs)`)), limitMs);
        }),
      ]);
    } catch (err) {
      killRunner(child.pid);
      await done;
      throw err;
    } finally {
      clearTimeout(timer);
      watch.close();
      await waitRunnerGone(child.pid);
    }
  }

  return { steady, expectNothingChanged, releaseWith };
}
