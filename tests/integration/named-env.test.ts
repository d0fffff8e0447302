/**
 * A named environment (dev) is resolved from a real foundation stack: its Pulumi.dev.yaml
 * (validated by the shared schema) and its outputs, read through the real engine from a
 * `file://` backend. AWS is the emulator; the foundation stack here is an inline program that
 * exports the outputs a real foundation would, pointing at resources seeded in the emulator.
 */
import { expect } from "chai";
import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { S3Client, CreateBucketCommand, ListObjectsV2Command } from "@aws-sdk/client-s3";
import { EC2Client, CreateLaunchTemplateCommand, RunInstancesCommand } from "@aws-sdk/client-ec2";
import { SSMClient, PutParameterCommand } from "@aws-sdk/client-ssm";
import { LocalWorkspace } from "@pulumi/pulumi/automation/index.js";
import { REPO_ROOT, sharedEmulator, type Emulator } from "../helpers/emulator.js";
import { engineEnv } from "../helpers/stack.js";
import { closedPort, collect } from "../helpers/zcp.js";
import { devConfigYaml } from "../fixtures/release/foundation.js";
import { SECRET_SIG_KEY, SECRET_SIG_VALUE } from "../../deploy/state-copy.js";

describe("a named environment read from its foundation stack (real engine, emulator)", function () {
  let emu: Emulator;
  let project: string;
  let state: string;
  let releaseState: string;
  let launchTemplateId = "";
  let outputs: Record<string, unknown> = {};
  const instanceIds: string[] = [];

  function zcp(args: string[], extra: Record<string, string> = {}) {
    const child = spawn(process.execPath, [path.join(REPO_ROOT, "bin", "zcp"), ...args], {
      env: {
        ...process.env,
        ...extra,
        ...emu.env,
        ...engineEnv(`file://${state}`),
        CI: "true",
        ZCP_PROJECT_DIR: project,
        ZCP_RELEASE_BACKEND_URL: `file://${releaseState}`,
        ZCP_WORK_DIR: path.join(project, ".work"),
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    return collect(child);
  }

  async function bucketKeys(): Promise<string[]> {
    const s3 = new S3Client({ region: "us-east-1", endpoint: emu.endpoint, forcePathStyle: true, credentials: { accessKeyId: "testing", secretAccessKey: "testing" } });
    try {
      return ((await s3.send(new ListObjectsV2Command({ Bucket: "web-dev-artifacts" }))).Contents ?? []).map((c) => c.Key ?? "");
    } finally {
      s3.destroy();
    }
  }

  before(async function () {
    emu = await sharedEmulator();
    const creds = { accessKeyId: "testing", secretAccessKey: "testing" };
    const s3 = new S3Client({ region: "us-east-1", endpoint: emu.endpoint, forcePathStyle: true, credentials: creds });
    const ec2 = new EC2Client({ region: "us-east-1", endpoint: emu.endpoint, credentials: creds });
    await s3.send(new CreateBucketCommand({ Bucket: "web-dev-artifacts" }));
    // As the foundation makes them: the image parameter with the base AMI, the template's image resolved from it.
    const ssm = new SSMClient({ region: "us-east-1", endpoint: emu.endpoint, credentials: creds });
    await ssm.send(new PutParameterCommand({ Name: "/zcp/web/dev/image-id", Value: "ami-12c6146b", Type: "String", DataType: "aws:ec2:image" }));
    ssm.destroy();
    const lt = await ec2.send(new CreateLaunchTemplateCommand({ LaunchTemplateName: "zcp-web-dev", LaunchTemplateData: { ImageId: "resolve:ssm:/zcp/web/dev/image-id" } }));
    launchTemplateId = lt.LaunchTemplate?.LaunchTemplateId ?? "";
    const tags = [
      { Key: "zcp:app", Value: "web" },
      { Key: "zcp:env", Value: "dev" },
    ];
    const run = await ec2.send(
      new RunInstancesCommand({ ImageId: "ami-12c6146b", MinCount: 2, MaxCount: 2, TagSpecifications: [{ ResourceType: "instance", Tags: tags }] }),
    );
    instanceIds.push(...(run.Instances ?? []).map((i) => i.InstanceId ?? ""));
    s3.destroy();
    ec2.destroy();

    project = fs.mkdtempSync(path.join(os.tmpdir(), "zcp-project-"));
    state = fs.mkdtempSync(path.join(os.tmpdir(), "zcp-foundation-state-"));
    releaseState = fs.mkdtempSync(path.join(os.tmpdir(), "zcp-release-state-"));
    fs.writeFileSync(path.join(project, "Pulumi.yaml"), "name: zero-credential-pipeline\nruntime: nodejs\n");
    fs.writeFileSync(path.join(project, "Pulumi.dev.yaml"), devConfigYaml({ accountId: "123456789012" }));
    outputs = {
      app: "web",
      environment: "dev",
      accountId: "123456789012",
      region: "us-east-1",
      bucket: "web-dev-artifacts",
      artifactPrefix: "releases/web",
      documentName: "zcp-web-dev-deploy",
      launchTemplateId,
      imageParameterName: "/zcp/web/dev/image-id",
      fleetTags: { "zcp:app": "web", "zcp:env": "dev" },
      releaseRoleArn: "arn:aws:iam::123456789012:role/zcp-web-dev-release",
      previewRoleArn: "arn:aws:iam::123456789012:role/zcp-web-dev-preview",
      instanceRoleArn: "arn:aws:iam::123456789012:role/zcp-web-dev-instance",
      instanceProfileName: "zcp-web-dev-instance",
    };
    const stack = await LocalWorkspace.createOrSelectStack(
      { stackName: "dev", projectName: "zero-credential-pipeline", program: async () => outputs },
      { workDir: project, envVars: engineEnv(`file://${state}`) },
    );
    await stack.up({ onOutput: () => undefined });
  });

  after(async function () {
    await emu?.stop();
    for (const d of [project, state, releaseState]) if (d) fs.rmSync(d, { recursive: true, force: true });
  });

  it("status reads the foundation's outputs and the tagged fleet", async function () {
    const r = await zcp(["status", "--env", "dev", "--json"]);
    expect(r.code, r.stderr).to.equal(0);
    const s = JSON.parse(r.stdout) as {
      environment: string;
      latest: unknown;
      launchTemplate: { id: string };
      imageParameter: { name: string; version: number; imageId: string };
      instances: { instanceId: string }[];
    };
    expect(s.environment).to.equal("dev");
    expect(s.latest).to.equal(null);
    expect(s.launchTemplate.id).to.equal(launchTemplateId);
    expect(s.imageParameter).to.deep.equal({ name: "/zcp/web/dev/image-id", version: 1, imageId: "ami-12c6146b" });
    expect(s.instances.map((i) => i.instanceId).sort()).to.deep.equal([...instanceIds].sort());
  });

  it("history of an environment never released says so", async function () {
    const r = await zcp(["history", "--env", "dev"]);
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stdout).to.match(/no releases of dev yet/);
  });

  /**
   * Stack files in the release stack's backend (none before the first release). The backend's
   * own `.pulumi/meta.yaml`, which the engine writes on first contact with a backend, is not a
   * stack; on S3 the foundation's stack shares the backend, so it is there already.
   */
  function releaseStackFiles(): string[] {
    const dir = path.join(releaseState, ".pulumi", "stacks");
    if (!fs.existsSync(dir)) return [];
    return (fs.readdirSync(dir, { recursive: true }) as string[]).filter((f) => fs.statSync(path.join(dir, f)).isFile());
  }

  it("preview of a first release lists every step as a create, uploads nothing and creates no release stack", async function () {
    const r = await zcp(["preview", "--env", "dev", "--version", "v1", "--source", path.join(REPO_ROOT, "examples", "app"), "--json"]);
    expect(r.code, r.stderr).to.equal(0);
    const p = JSON.parse(r.stdout) as { versionFrom: string | null; versionTo: string; steps: { resource: string; op: string }[]; imageParameter: string };
    expect(p.versionFrom).to.equal(null);
    expect(p.imageParameter).to.equal("/zcp/web/dev/image-id version 1 (ami-12c6146b) → the v1 image");
    expect(p.versionTo).to.equal("v1");
    expect(p.steps.map((st) => `${st.resource}:${st.op}`)).to.deep.equal([
      "Artifact:create",
      "FleetDeployment:create",
      "BakedImage:create",
      "LaunchTemplateRelease:create",
      "LatestPointer:create",
    ]);
    expect(await bucketKeys()).to.deep.equal([]);
    expect(releaseStackFiles(), "release stack created by a preview").to.deep.equal([]);
  });

  it("preview reads the foundation without decrypting: its state's secrets provider an awskms key that cannot be reached (stand-in: an unknown key, KMS on a closed 127.0.0.1 port)", async function () {
    const checkpoint = path.join(state, ".pulumi", "stacks", "zero-credential-pipeline", "dev.json");
    const original = fs.readFileSync(checkpoint);
    const chk = JSON.parse(original.toString("utf8")) as { checkpoint: { latest: { secrets_providers?: unknown } } };
    // As the foundation's state on S3 looks (pulumi/pulumi pkg/secrets/cloud/manager.go).
    chk.checkpoint.latest.secrets_providers = {
      type: "cloud",
      state: { url: "awskms:///arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-00000000dead?region=us-east-1", encryptedkey: Buffer.alloc(184, 7).toString("base64") },
    };
    fs.writeFileSync(checkpoint, JSON.stringify(chk));
    const closed = await closedPort();
    try {
      const r = await zcp(["preview", "--env", "dev", "--version", "v1", "--source", path.join(REPO_ROOT, "examples", "app"), "--json"], {
        AWS_ENDPOINT_URL_KMS: `http://127.0.0.1:${closed}`,
        // Should anything ignore the KMS endpoint, it still reaches nothing beyond 127.0.0.1.
        HTTPS_PROXY: `http://127.0.0.1:${closed}`,
        HTTP_PROXY: `http://127.0.0.1:${closed}`,
        NO_PROXY: "127.0.0.1,localhost",
      });
      expect(r.code, r.stderr).to.equal(0);
      const p = JSON.parse(r.stdout) as { steps: { resource: string; op: string }[] };
      expect(p.steps.map((st) => `${st.resource}:${st.op}`)).to.have.length(5);
    } finally {
      fs.writeFileSync(checkpoint, original);
    }
  });

  it("zcp state copy: a foundation whose state and Pulumi.dev.yaml name an awskms key that cannot be reached (stand-in: an unknown key, KMS on a closed 127.0.0.1 port) is copied without decrypting (an encrypted value becomes a placeholder), and the copy previews its resources unchanged", async function () {
    const checkpoint = path.join(state, ".pulumi", "stacks", "zero-credential-pipeline", "dev.json");
    const configFile = path.join(project, "Pulumi.dev.yaml");
    const original = { checkpoint: fs.readFileSync(checkpoint), config: fs.readFileSync(configFile) };
    const keyUrl = "awskms:///arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-00000000dead?region=us-east-1";
    const encryptedKey = Buffer.alloc(184, 7).toString("base64");
    const chk = JSON.parse(original.checkpoint.toString("utf8")) as {
      checkpoint: { latest: { secrets_providers?: unknown; resources: { type: string; outputs?: Record<string, unknown> }[] } };
    };
    // As `pulumi stack init --secrets-provider awskms://…` leaves them (docs/ci.md, bootstrap).
    chk.checkpoint.latest.secrets_providers = { type: "cloud", state: { url: keyUrl, encryptedkey: encryptedKey } };
    // zcp keeps no secret in the foundation; were there one, it is encrypted with that key.
    const root = chk.checkpoint.latest.resources.find((r) => r.type === "pulumi:pulumi:Stack");
    root!.outputs = { ...root!.outputs, token: { [SECRET_SIG_KEY]: SECRET_SIG_VALUE, ciphertext: "AQICAHhdeadbeef" } };
    fs.writeFileSync(checkpoint, JSON.stringify(chk));
    fs.writeFileSync(configFile, `secretsprovider: ${keyUrl}\nencryptedkey: ${encryptedKey}\n${original.config.toString("utf8")}`);
    // The foundation program, as a project file: the same outputs the stack holds.
    fs.writeFileSync(path.join(project, "index.js"), `module.exports = ${JSON.stringify(outputs)};\n`);
    fs.symlinkSync(path.join(REPO_ROOT, "node_modules"), path.join(project, "node_modules"));
    const copyDir = fs.mkdtempSync(path.join(os.tmpdir(), "zcp-foundation-copy-"));
    const closed = await closedPort();
    const unreachableKms = {
      AWS_ENDPOINT_URL_KMS: `http://127.0.0.1:${closed}`,
      // Should anything ignore the KMS endpoint, it still reaches nothing beyond 127.0.0.1.
      HTTPS_PROXY: `http://127.0.0.1:${closed}`,
      HTTP_PROXY: `http://127.0.0.1:${closed}`,
      NO_PROXY: "127.0.0.1,localhost",
    };
    try {
      // The stand-in holds: previewing the real stack needs the key, and cannot have it.
      const direct = spawnSync("pulumi", ["preview", "--stack", "dev", "--non-interactive", "--color", "never"], {
        cwd: project,
        env: { ...process.env, ...emu.env, ...engineEnv(`file://${state}`), ...unreachableKms },
        encoding: "utf8",
      });
      expect(direct.status, direct.stdout + direct.stderr).to.not.equal(0);
      expect(direct.stdout + direct.stderr).to.match(/KMS: Decrypt/);

      const r = await zcp(["state", "copy", "--env", "dev", "--to", copyDir, "--json"], unreachableKms);
      expect(r.code, r.stderr).to.equal(0);
      const copy = JSON.parse(r.stdout) as { backendUrl: string; passphraseFile: string; configFile: string; placeholders: string[] };
      expect(copy.backendUrl).to.equal(`file://${copyDir}/backend`);
      expect(copy.placeholders).to.have.length(1);
      expect(copy.placeholders[0]).to.match(/^deployment\.resources\[\d+\]\.outputs\.token$/);
      const copiedConfig = fs.readFileSync(copy.configFile, "utf8");
      expect(copiedConfig).to.not.match(/secretsprovider|encryptedkey/);
      expect(copiedConfig).to.match(/zcp:app: web/);
      // The real stack is untouched.
      expect(fs.readFileSync(checkpoint, "utf8")).to.equal(JSON.stringify(chk));

      // What the workflow's preview step runs: the copy, its passphrase file, its config.
      const env: NodeJS.ProcessEnv = { ...process.env, ...emu.env, ...engineEnv(copy.backendUrl), ...unreachableKms, PULUMI_CONFIG_PASSPHRASE_FILE: copy.passphraseFile };
      delete env.PULUMI_CONFIG_PASSPHRASE;
      const pv = spawnSync("pulumi", ["preview", "--stack", "dev", "--config-file", copy.configFile, "--non-interactive", "--color", "never"], { cwd: project, env, encoding: "utf8" });
      expect(pv.status, pv.stdout + pv.stderr).to.equal(0);
      expect(pv.stdout).to.match(/1 unchanged/);
      expect(pv.stdout).to.not.match(/to create|to update|to delete/);
    } finally {
      fs.writeFileSync(checkpoint, original.checkpoint);
      fs.writeFileSync(configFile, original.config);
      fs.rmSync(path.join(project, "index.js"), { force: true });
      fs.rmSync(path.join(project, "node_modules"), { force: true });
      fs.rmSync(copyDir, { recursive: true, force: true });
    }
  });

  it("credentials of another account than the configured one exit 2 before anything is packaged", async function () {
    fs.writeFileSync(path.join(project, "Pulumi.dev.yaml"), devConfigYaml({ accountId: "111111111111" }));
    try {
      const r = await zcp(["release", "--env", "dev", "--version", "v1", "--source", path.join(REPO_ROOT, "examples", "app")]);
      expect(r.code, r.stderr).to.equal(2);
      expect(r.stderr).to.match(/environment "dev" is configured for AWS account 111111111111, but the current credentials belong to 123456789012; nothing was changed/);
      expect(await bucketKeys()).to.deep.equal([]);
    } finally {
      fs.writeFileSync(path.join(project, "Pulumi.dev.yaml"), devConfigYaml({ accountId: "123456789012" }));
    }
  });

  it("a configuration error names the field and exits 2", async function () {
    fs.writeFileSync(path.join(project, "Pulumi.dev.yaml"), devConfigYaml({ accountId: "123456789012", batch: "0%" }));
    try {
      const r = await zcp(["release", "--env", "dev", "--version", "v1"]);
      expect(r.code, r.stderr).to.equal(2);
      expect(r.stderr).to.match(/zcp:deploy\.batch: must be 1\.\.100% or a count, got "0%"/);
      expect(await bucketKeys()).to.deep.equal([]);
    } finally {
      fs.writeFileSync(path.join(project, "Pulumi.dev.yaml"), devConfigYaml({ accountId: "123456789012" }));
    }
  });
});
