/**
 * The embedded local environment (`--env local`): the whole release flow on one machine with
 * no AWS account. AWS APIs come from the emulator on 127.0.0.1, Pulumi state lives in a
 * `file://` backend under the work folder, and "instances" are local directories, each with
 * its own supervisord and app port, reached over the local transport.
 *
 * Everything here is idempotent: the first command starts the emulator and the fleet and
 * seeds what the foundation would have made; later commands reuse them. `zcp local down`
 * stops what this module started (by the pids it recorded, never by process name).
 */
import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import { processAlive } from "../process.js";
import * as os from "node:os";
import * as path from "node:path";
import * as net from "node:net";
import { CreateBucketCommand, HeadBucketCommand, PutBucketVersioningCommand } from "@aws-sdk/client-s3";
import {
  CreateLaunchTemplateCommand,
  DescribeImagesCommand,
  DescribeInstancesCommand,
  DescribeLaunchTemplatesCommand,
  RunInstancesCommand,
} from "@aws-sdk/client-ec2";
import { GetParameterCommand, PutParameterCommand } from "@aws-sdk/client-ssm";
import { createAwsClients, destroyAwsClients } from "../aws/clients.js";
import { artifactPrefix, deployDocumentName, imageParameterName, launchTemplateName } from "../../shared/naming.js";
import { baseTags, TAG_APP, TAG_ENV } from "../../shared/tags.js";
import type { FoundationOutputs } from "../../shared/outputs.js";
import { toolsDir } from "../repo.js";
import * as fleet from "./fleet.js";
import { ensureLoadBalancer, stopLoadBalancer, type LoadBalancerState } from "./load-balancer.js";
import { mark } from "../timings.js";

export const LOCAL_ENV = "local";
export const LOCAL_APP = "example";
export const LOCAL_REGION = "us-east-1";
/** The emulator's fixed account id. */
export const LOCAL_ACCOUNT = "123456789012";
const LOCAL_BUCKET = "zcp-local-artifacts";

export interface LocalState {
  emulator?: { pid: number; port: number };
  instances: { instanceId: string; port: number; dir: string }[];
  /** The HAProxy in front of the instances. */
  loadBalancer?: LoadBalancerState;
}

export function workRoot(): string {
  return path.resolve(process.env.ZCP_WORK_DIR ?? path.join(process.cwd(), ".work"));
}
export function localRoot(): string {
  return path.join(workRoot(), "local");
}
export function fleetRoot(): string {
  return path.join(localRoot(), "fleet");
}
/** The release stack's `file://` backend for the local environment. */
export function localBackendDir(): string {
  return path.join(localRoot(), "pulumi-state");
}
function statePath(): string {
  return path.join(localRoot(), "state.json");
}
export function readLocalState(): LocalState {
  try {
    return JSON.parse(fs.readFileSync(statePath(), "utf8")) as LocalState;
  } catch {
    return { instances: [] };
  }
}
function writeLocalState(s: LocalState): void {
  fs.mkdirSync(localRoot(), { recursive: true });
  fs.writeFileSync(statePath(), `${JSON.stringify(s, null, 2)}\n`);
}

export function instanceCount(): number {
  const raw = process.env.ZCP_LOCAL_INSTANCES ?? "3";
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1 || n > 64) throw new Error(`ZCP_LOCAL_INSTANCES: must be 1..64, got ${JSON.stringify(raw)}`);
  return n;
}

/** Placeholder credentials the emulator accepts; they are not keys to anything. */
export function localAwsEnv(endpoint: string): Record<string, string> {
  const tools = toolsDir();
  return {
    AWS_ENDPOINT_URL: endpoint,
    AWS_REGION: LOCAL_REGION,
    AWS_DEFAULT_REGION: LOCAL_REGION,
    AWS_ACCESS_KEY_ID: "testing",
    AWS_SECRET_ACCESS_KEY: "testing",
    AWS_EC2_METADATA_DISABLED: "true",
    // The agent fetches artifacts with the AWS CLI from the project's tool folder. Folders the
    // caller's PATH already has keep their place (a caller may put its own tools before them).
    PATH: withToolDirs([path.join(tools, "venv", "bin"), path.join(tools, "bin")], process.env.PATH ?? ""),
  };
}

function withToolDirs(dirs: readonly string[], pathEnv: string): string {
  const current = pathEnv.split(path.delimiter);
  return [...dirs.filter((d) => !current.includes(d)), ...current].join(path.delimiter);
}

const pidAlive = processAlive;

async function httpOk(url: string): Promise<boolean> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(1000) });
    return res.status < 500;
  } catch {
    return false;
  }
}

async function freePort(): Promise<number> {
  return await new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const a = srv.address();
      srv.close(() => resolve(typeof a === "object" && a ? a.port : 0));
    });
  });
}

function motoServer(): string {
  const local = path.join(toolsDir(), "venv", "bin", "moto_server");
  return fs.existsSync(local) ? local : "moto_server";
}

/** Starts the emulator unless the one this work folder recorded still answers. */
export async function ensureEmulator(log: (m: string) => void): Promise<{ endpoint: string; fresh: boolean }> {
  const state = readLocalState();
  if (state.emulator && pidAlive(state.emulator.pid) && (await httpOk(`http://127.0.0.1:${state.emulator.port}/moto-api/`))) {
    return { endpoint: `http://127.0.0.1:${state.emulator.port}`, fresh: false };
  }
  const port = await freePort();
  fs.mkdirSync(localRoot(), { recursive: true });
  const logFd = fs.openSync(path.join(localRoot(), "emulator.log"), "a");
  const child = spawn(motoServer(), ["-H", "127.0.0.1", "-p", String(port)], {
    detached: true,
    stdio: ["ignore", logFd, logFd],
  });
  fs.closeSync(logFd);
  child.unref();
  if (!child.pid) throw new Error("could not start the AWS emulator (moto_server); run `bash scripts/tools.sh`");
  const endpoint = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 30000;
  while (!(await httpOk(`${endpoint}/moto-api/`))) {
    if (Date.now() > deadline || !pidAlive(child.pid)) {
      throw new Error(`the AWS emulator did not start on ${endpoint}; see ${path.join(localRoot(), "emulator.log")}`);
    }
    await new Promise((r) => setTimeout(r, 150));
  }
  // A new emulator has an empty world: the instances, their folders and the release stack's
  // state recorded against the old one describe things that no longer exist.
  for (const i of state.instances) await stopInstanceQuietly(i);
  if (state.loadBalancer) await stopLoadBalancer(state.loadBalancer);
  fs.rmSync(fleetRoot(), { recursive: true, force: true });
  fs.rmSync(localBackendDir(), { recursive: true, force: true });
  writeLocalState({ emulator: { pid: child.pid, port }, instances: [] });
  log(`started the AWS emulator on ${endpoint}`);
  return { endpoint, fresh: true };
}

async function stopInstanceQuietly(i: LocalState["instances"][number]): Promise<void> {
  try {
    await fleet.stopSupervisor(fleet.loadInstance(path.dirname(i.dir), i.instanceId));
  } catch {
    // already stopped
  }
}

export interface LocalEnvironment {
  endpoint: string;
  outputs: FoundationOutputs;
  instances: LocalState["instances"];
  appUser: string;
  loadBalancer: LoadBalancerState;
}

/** The dedicated user the local fleet's app runs as when zcp runs as root. */
export const LOCAL_ROOT_APP_USER = "zcp-app";

/**
 * The user the local fleet's app runs as: the current user, or, as root, a dedicated system
 * user created when missing (the agent refuses to run an app as root, as the launch
 * template's user data does on EC2).
 */
export function localAppUser(): string {
  if (typeof process.getuid !== "function" || process.getuid() !== 0) return os.userInfo().username;
  const exists = spawnSync("id", ["-u", LOCAL_ROOT_APP_USER], { stdio: "ignore" }).status === 0;
  if (!exists) {
    const made = spawnSync("useradd", ["--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin", LOCAL_ROOT_APP_USER], {
      encoding: "utf8",
    });
    // Another process may have created it meanwhile.
    if (made.status !== 0 && spawnSync("id", ["-u", LOCAL_ROOT_APP_USER], { stdio: "ignore" }).status !== 0) {
      throw new Error(`cannot create the local app user ${LOCAL_ROOT_APP_USER}: ${made.stderr.trim()}`);
    }
  }
  return LOCAL_ROOT_APP_USER;
}

/**
 * Makes sure the emulator runs and holds what the foundation would have made (bucket, image
 * parameter, launch template, tagged instances), and that each instance has its directory and
 * supervisord.
 */
export async function ensureLocalEnvironment(log: (m: string) => void): Promise<LocalEnvironment> {
  const { endpoint } = await ensureEmulator(log);
  mark("local: emulator answers");
  const env = localAwsEnv(endpoint);
  Object.assign(process.env, env);
  const clients = createAwsClients({ region: LOCAL_REGION, endpoint });
  const appUser = localAppUser();
  mark("local: app user known");
  try {
    const { s3, ec2, ssm } = clients;
    try {
      await s3.send(new HeadBucketCommand({ Bucket: LOCAL_BUCKET }));
    } catch {
      await s3.send(new CreateBucketCommand({ Bucket: LOCAL_BUCKET }));
      await s3.send(new PutBucketVersioningCommand({ Bucket: LOCAL_BUCKET, VersioningConfiguration: { Status: "Enabled" } }));
    }
    mark("local: bucket checked");
    // Only seeding needs the base image, and listing the emulator's catalogue of public images
    // takes longer than the rest of this check together (0.9 s on a quiet 2-core machine,
    // nearly 2 s on a busy one; docs/benchmarks.md): it is asked only when something is seeded.
    let baseImageId: string | undefined;
    const baseImage = async (): Promise<string> => {
      if (baseImageId === undefined) {
        const images = await ec2.send(new DescribeImagesCommand({ Owners: ["amazon"] }));
        baseImageId = images.Images?.find((i) => i.ImageId)?.ImageId ?? "ami-12c6146b";
      }
      return baseImageId;
    };
    const parameterName = imageParameterName(LOCAL_APP, LOCAL_ENV);
    try {
      await ssm.send(new GetParameterCommand({ Name: parameterName }));
    } catch {
      // As the foundation makes it: the base image until the first release moves it.
      await ssm.send(new PutParameterCommand({ Name: parameterName, Value: await baseImage(), Type: "String", DataType: "aws:ec2:image" }));
      log(`seeded image parameter ${parameterName} (${await baseImage()})`);
    }
    const ltName = launchTemplateName(LOCAL_APP, LOCAL_ENV);
    let launchTemplateId: string | undefined;
    try {
      const found = await ec2.send(new DescribeLaunchTemplatesCommand({ LaunchTemplateNames: [ltName] }));
      launchTemplateId = found.LaunchTemplates?.[0]?.LaunchTemplateId;
    } catch {
      launchTemplateId = undefined;
    }
    if (!launchTemplateId) {
      const created = await ec2.send(
        new CreateLaunchTemplateCommand({
          LaunchTemplateName: ltName,
          LaunchTemplateData: {
            ImageId: `resolve:ssm:${parameterName}`,
            InstanceType: "t3.micro",
            MetadataOptions: { HttpTokens: "required", HttpEndpoint: "enabled" },
          },
          TagSpecifications: [{ ResourceType: "launch-template", Tags: tagPairs(baseTags(LOCAL_APP, LOCAL_ENV)) }],
        }),
      );
      launchTemplateId = created.LaunchTemplate?.LaunchTemplateId;
      if (!launchTemplateId) throw new Error("the emulator created no launch template");
      log(`seeded launch template ${ltName} (${launchTemplateId})`);
    }

    mark("local: image parameter and launch template checked");
    const running = await ec2.send(
      new DescribeInstancesCommand({
        Filters: [
          { Name: `tag:${TAG_APP}`, Values: [LOCAL_APP] },
          { Name: `tag:${TAG_ENV}`, Values: [LOCAL_ENV] },
          { Name: "instance-state-name", Values: ["running"] },
        ],
      }),
    );
    const ids = (running.Reservations ?? []).flatMap((r) => r.Instances ?? []).map((i) => i.InstanceId ?? "").filter(Boolean);
    const want = instanceCount();
    if (ids.length < want) {
      const launched = await ec2.send(
        new RunInstancesCommand({
          LaunchTemplate: { LaunchTemplateId: launchTemplateId },
          // The emulator does not resolve `resolve:ssm:` at launch as EC2 does; name the image.
          ImageId: await baseImage(),
          MinCount: want - ids.length,
          MaxCount: want - ids.length,
          TagSpecifications: [{ ResourceType: "instance", Tags: tagPairs(baseTags(LOCAL_APP, LOCAL_ENV)) }],
        }),
      );
      ids.push(...(launched.Instances ?? []).map((i) => i.InstanceId ?? "").filter(Boolean));
      log(`seeded ${want - (ids.length - (launched.Instances?.length ?? 0))} instance(s) in the emulator`);
    }

    mark("local: instances listed");
    const state = readLocalState();
    const instances: LocalState["instances"] = [];
    for (const instanceId of ids.sort()) {
      const known = state.instances.find((i) => i.instanceId === instanceId);
      // A free port per new instance, so several local environments (tests, benchmarks) can
      // run side by side.
      const port = known?.port ?? (await freePort());
      const dir = known?.dir ?? path.join(fleetRoot(), instanceId);
      const inst = fs.existsSync(path.join(dir, "instance.json"))
        ? fleet.loadInstance(fleetRoot(), instanceId)
        : fleet.createInstance(fleetRoot(), instanceId, { port, appUser, service: LOCAL_APP });
      await fleet.startSupervisor(inst);
      instances.push({ instanceId, port, dir });
    }
    mark("local: supervisors checked");
    const loadBalancer = await ensureLoadBalancer({
      dir: localRoot(),
      current: state.loadBalancer,
      targets: instances,
      healthPath: "/health",
      freePort,
      log,
    });
    writeLocalState({ ...state, instances, loadBalancer });
    mark("local: load balancer checked");

    return {
      endpoint,
      appUser,
      instances,
      loadBalancer,
      outputs: {
        app: LOCAL_APP,
        environment: LOCAL_ENV,
        accountId: LOCAL_ACCOUNT,
        region: LOCAL_REGION,
        bucket: LOCAL_BUCKET,
        artifactPrefix: artifactPrefix(LOCAL_APP),
        documentName: deployDocumentName(LOCAL_APP, LOCAL_ENV),
        launchTemplateId,
        imageParameterName: parameterName,
        fleetTags: { [TAG_APP]: LOCAL_APP, [TAG_ENV]: LOCAL_ENV },
        releaseRoleArn: `arn:aws:iam::${LOCAL_ACCOUNT}:role/zcp-${LOCAL_APP}-${LOCAL_ENV}-release`,
        previewRoleArn: `arn:aws:iam::${LOCAL_ACCOUNT}:role/zcp-${LOCAL_APP}-${LOCAL_ENV}-preview`,
        instanceRoleArn: `arn:aws:iam::${LOCAL_ACCOUNT}:role/zcp-${LOCAL_APP}-${LOCAL_ENV}-instance`,
        instanceProfileName: `zcp-${LOCAL_APP}-${LOCAL_ENV}-instance`,
      },
    };
  } finally {
    destroyAwsClients(clients);
  }
}

function tagPairs(tags: Record<string, string>): { Key: string; Value: string }[] {
  return Object.entries(tags).map(([Key, Value]) => ({ Key, Value }));
}

/** Stops every process the local environment started: the load balancer, each instance's supervisord, then the emulator. */
export async function stopLocalEnvironment(log: (m: string) => void): Promise<void> {
  const state = readLocalState();
  if (state.loadBalancer && (await stopLoadBalancer(state.loadBalancer))) log(`stopped HAProxy (pid ${state.loadBalancer.pid})`);
  for (const i of state.instances) {
    await stopInstanceQuietly(i);
    log(`stopped ${i.instanceId}`);
  }
  if (state.emulator && pidAlive(state.emulator.pid)) {
    process.kill(state.emulator.pid, "SIGTERM");
    log(`stopped the AWS emulator (pid ${state.emulator.pid})`);
  }
  writeLocalState({ instances: [] });
}
