/**
 * Runs the real `zcp` command (bin/zcp → dist/deploy/cli.js) against a throwaway work folder,
 * so each suite gets its own local environment, state backend and fleet.
 */
import { spawn, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { S3Client, GetObjectCommand, ListObjectsV2Command } from "@aws-sdk/client-s3";
import { EC2Client, DescribeImagesCommand } from "@aws-sdk/client-ec2";
import { SSMClient, GetParameterCommand } from "@aws-sdk/client-ssm";
import { REPO_ROOT } from "./emulator.js";

export interface ZcpRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

export class ZcpHarness {
  readonly workDir: string;
  constructor(readonly instances = 3) {
    this.workDir = fs.mkdtempSync(path.join(os.tmpdir(), "zcp-it-"));
    // As root the local fleet's app runs as a dedicated user, which must reach the fleet.
    fs.chmodSync(this.workDir, 0o755);
  }

  env(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
    return {
      ...process.env,
      CI: "true",
      ZCP_WORK_DIR: this.workDir,
      ZCP_LOCAL_INSTANCES: String(this.instances),
      ZCP_LOCAL_SOAK_S: "0",
      ZCP_LOCAL_HEALTH_TIMEOUT_S: "6",
      ...extra,
    };
  }

  spawn(args: readonly string[], extra: Record<string, string> = {}): ChildProcess {
    return spawn(process.execPath, [path.join(REPO_ROOT, "bin", "zcp"), ...args], {
      env: this.env(extra),
      stdio: ["ignore", "pipe", "pipe"],
      // Its own process group, so a test can kill the runner together with the engine.
      detached: true,
    });
  }

  async run(args: readonly string[], extra: Record<string, string> = {}): Promise<ZcpRun> {
    const child = this.spawn(args, extra);
    return await collect(child);
  }

  /** The emulator endpoint the local environment recorded. */
  endpoint(): string {
    const state = JSON.parse(fs.readFileSync(path.join(this.workDir, "local", "state.json"), "utf8")) as {
      emulator?: { port: number };
    };
    if (!state.emulator) throw new Error("local environment not started");
    return `http://127.0.0.1:${state.emulator.port}`;
  }

  instancePorts(): { instanceId: string; port: number }[] {
    const state = JSON.parse(fs.readFileSync(path.join(this.workDir, "local", "state.json"), "utf8")) as {
      instances: { instanceId: string; port: number }[];
    };
    return state.instances;
  }

  async versions(): Promise<Record<string, string>> {
    const out: Record<string, string> = {};
    for (const i of this.instancePorts()) {
      try {
        const res = await fetch(`http://127.0.0.1:${i.port}/version`, { signal: AbortSignal.timeout(3000) });
        out[i.instanceId] = ((await res.json()) as { version: string }).version;
      } catch {
        out[i.instanceId] = "down";
      }
    }
    return out;
  }

  private clients() {
    const common = {
      region: "us-east-1",
      endpoint: this.endpoint(),
      // The emulator's placeholder pair; it accepts any.
      credentials: { accessKeyId: "testing", secretAccessKey: "testing" },
    };
    return { s3: new S3Client({ ...common, forcePathStyle: true }), ec2: new EC2Client(common), ssm: new SSMClient(common) };
  }

  async latest(): Promise<{ body: Record<string, unknown>; etag: string } | undefined> {
    const { s3 } = this.clients();
    try {
      const r = await s3.send(new GetObjectCommand({ Bucket: "zcp-local-artifacts", Key: "releases/example/latest.json" }));
      return { body: JSON.parse((await r.Body?.transformToString()) ?? "{}") as Record<string, unknown>, etag: r.ETag ?? "" };
    } catch {
      return undefined;
    } finally {
      s3.destroy();
    }
  }

  async objectKeys(): Promise<string[]> {
    const { s3 } = this.clients();
    try {
      const r = await s3.send(new ListObjectsV2Command({ Bucket: "zcp-local-artifacts" }));
      return (r.Contents ?? []).map((c) => `${c.Key}@${c.ETag}`).sort();
    } finally {
      s3.destroy();
    }
  }

  /** The image parameter the local launch template resolves its image from: what new instances boot. */
  async imageParameter(): Promise<{ version: number; imageId: string }> {
    const { ssm } = this.clients();
    try {
      const r = await ssm.send(new GetParameterCommand({ Name: "/zcp/example/local/image-id" }));
      return { version: r.Parameter?.Version ?? 0, imageId: r.Parameter?.Value ?? "" };
    } finally {
      ssm.destroy();
    }
  }

  async imageTags(imageId: string): Promise<Record<string, string>> {
    const { ec2 } = this.clients();
    try {
      const r = await ec2.send(new DescribeImagesCommand({ ImageIds: [imageId] }));
      return Object.fromEntries((r.Images?.[0]?.Tags ?? []).map((t) => [t.Key ?? "", t.Value ?? ""]));
    } finally {
      ec2.destroy();
    }
  }

  async teardown(): Promise<void> {
    await this.run(["local", "down"]).catch(() => undefined);
    fs.rmSync(this.workDir, { recursive: true, force: true });
  }
}

export async function collect(child: ChildProcess): Promise<ZcpRun> {
  let stdout = "";
  let stderr = "";
  child.stdout?.on("data", (d: Buffer) => (stdout += d.toString()));
  child.stderr?.on("data", (d: Buffer) => (stderr += d.toString()));
  const code = await new Promise<number | null>((resolve) => child.on("close", (c) => resolve(c)));
  return { code, stdout, stderr };
}

/** Polls until `cond` holds (or throws after `timeoutMs`). */
export async function waitFor(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 60000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** A 127.0.0.1 port nothing listens on (bound, then closed): an endpoint that cannot be reached. */
export async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
