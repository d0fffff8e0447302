/**
 * An image bake that fails. The emulator cannot be told to fail CreateImage, so this runs the
 * BakedImage step itself against a mocked EC2 whose new image ends up `failed`, and checks the
 * wiring of the release program that keeps the launch template and latest.json as they were
 * when the bake fails (no Pulumi mocks: the step classes are replaced by recorders).
 */
import { expect } from "chai";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import {
  CreateImageCommand,
  DescribeImagesCommand,
  EC2Client,
  type DescribeImagesCommandInput,
} from "@aws-sdk/client-ec2";
import { mockClient } from "aws-sdk-client-mock";
import { bakeImage } from "../../deploy/steps/baked-image.js";
import { PROGRESS_ENV, readProgress } from "../../deploy/progress.js";
import { releaseProgram, type ReleasePlan } from "../../deploy/program.js";
import { StepError } from "../../shared/errors.js";
import type { BakedImageInputs } from "../../deploy/steps/types.js";

/** Mocks every EC2 client constructed from here on, not one instance: the step builds its own. */
const mockEc2 = () => mockClient(EC2Client);

const INPUTS: BakedImageInputs = {
  app: "shop",
  environment: "dev",
  region: "us-east-1",
  version: "v2",
  sha256: "c".repeat(64),
  sourceInstanceId: "i-0abc",
  candidateImageId: "",
  noReboot: true,
  retain: 3,
  waitTimeoutMinutes: 60,
  launchTemplateId: "lt-0abc",
  imageParameterName: "",
  tagSnapshotsOnCreate: false,
};

describe("faults: an image bake that fails", function () {
  const saved: Record<string, string | undefined> = {};
  let dir: string;
  let ec2: ReturnType<typeof mockEc2>;

  beforeEach(function () {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "zcp-faults-image-"));
    for (const k of [PROGRESS_ENV, "AWS_ENDPOINT_URL"]) saved[k] = process.env[k];
    process.env[PROGRESS_ENV] = path.join(dir, "progress.jsonl");
    // The step builds its own clients; should the mock ever let one through, it meets a closed port.
    process.env.AWS_ENDPOINT_URL = "http://127.0.0.1:9";
    ec2 = mockEc2();
    ec2.on(DescribeImagesCommand).callsFake((input: DescribeImagesCommandInput) =>
      input.ImageIds
        ? {
            Images: [
              {
                ImageId: "ami-0bake",
                Name: "zcp-shop-dev-v2-20260426T101500Z",
                State: "failed",
                StateReason: { Code: "Client.InternalError", Message: "Client.InternalError: snapshot creation failed" },
              },
            ],
          }
        : { Images: [] },
    );
    ec2.on(CreateImageCommand).resolves({ ImageId: "ami-0bake" });
  });

  afterEach(function () {
    ec2.restore();
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it("the BakedImage step fails with the image, its state and the reason, and records the failure", async function () {
    const err = await bakeImage(INPUTS).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).to.be.instanceOf(StepError);
    const message = (err as Error).message;
    expect(message).to.equal(
      'Waiting for image ami-0bake failed: the image entered state "failed" (Client.InternalError: snapshot creation failed) and will never become available',
    );
    const steps = readProgress(process.env[PROGRESS_ENV] as string, 0).records.filter((r) => r.kind === "step");
    expect(steps.map((r) => (r.kind === "step" ? [r.step, r.state, r.detail] : []))).to.deep.equal([
      ["BakedImage", "start", "v2"],
      ["BakedImage", "failed", message],
    ]);
  });

  it("a failed bake touches nothing else: no retention, no snapshot tags, no template version", async function () {
    await bakeImage(INPUTS).catch(() => undefined);
    // Look for this version's image, create it, see it failed: nothing after that.
    expect(ec2.calls().map((c) => (c.args[0] as object).constructor.name)).to.deep.equal([
      "DescribeImagesCommand",
      "CreateImageCommand",
      "DescribeImagesCommand",
    ]);
  });
});

/** A stand-in for one dynamic resource: records how the program built it; any output is a token naming it. */
interface Built {
  type: string;
  name: string;
  args: Record<string, unknown>;
  dependsOn: unknown[];
  self: object;
}

const output = (resource: string, name: string) => ({ output: `${resource}.${name}` });

function recorderFor(type: string, built: Built[]) {
  return class {
    constructor(name: string, args: Record<string, unknown>, opts?: { dependsOn?: unknown }) {
      const self = new Proxy(this, { get: (_t, prop) => (typeof prop === "string" ? output(name, prop) : undefined) });
      const dependsOn = opts?.dependsOn === undefined ? [] : Array.isArray(opts.dependsOn) ? opts.dependsOn : [opts.dependsOn];
      built.push({ type, name, args, dependsOn, self });
      return self;
    }
  };
}

const PLAN: ReleasePlan = {
  app: "shop",
  environment: "dev",
  region: "us-east-1",
  bucket: "zcp-artifacts",
  version: "v2",
  artifactKey: "releases/shop/v2.tar.gz",
  sha256: "c".repeat(64),
  fleet: {
    runtime: {
      appDir: "/srv/shop",
      appUser: "shop",
      service: "shop",
      processManager: "supervisor",
      healthUrl: "http://127.0.0.1:8080/health",
      healthTimeoutS: 30,
      keepReleases: 3,
    },
    canary: 1,
    batch: "25%",
    soakSeconds: 60,
    maxErrors: 0,
    commandTimeoutS: 600,
    transport: { kind: "ssm", documentName: "zcp-shop-dev-deploy" },
    traffic: { kind: "none" },
    minHealthyPercent: 0,
    alarmNames: [],
  },
  image: { enabled: true, noReboot: true, retain: 3, waitTimeoutMinutes: 60, tagSnapshotsOnCreate: true, bakeStart: "canary" },
  launchTemplateId: "lt-0abc",
  imageParameterName: "/zcp/shop/dev/image-id",
  latestEtag: '"etag-1"',
};

describe("faults: the release program puts the image before the template and the pointer", function () {
  const STEP_MODULES: [string, string][] = [
    ["../../deploy/providers/artifact.js", "Artifact"],
    ["../../deploy/providers/fleet-deployment.js", "FleetDeployment"],
    ["../../deploy/providers/baked-image.js", "BakedImage"],
    ["../../deploy/providers/launch-template-release.js", "LaunchTemplateRelease"],
    ["../../deploy/providers/latest-pointer.js", "LatestPointer"],
  ];

  /** Runs the program with every step class replaced by a recorder; restores them after. */
  async function build(plan: ReleasePlan): Promise<Built[]> {
    const built: Built[] = [];
    const originals: [Record<string, unknown>, string, unknown][] = [];
    try {
      for (const [file, type] of STEP_MODULES) {
        // The same module object the compiled program reads its classes from at call time.
        const mod = require(file) as Record<string, unknown>;
        originals.push([mod, type, mod[type]]);
        mod[type] = recorderFor(type, built);
      }
      await releaseProgram(plan)();
    } finally {
      for (const [mod, type, original] of originals) mod[type] = original;
    }
    return built;
  }

  it("a failed bake leaves the template and latest.json alone: both wait on the image, through dependsOn or its outputs", async function () {
    const built = await build(PLAN);
    expect(built.map((b) => b.type)).to.deep.equal(["Artifact", "FleetDeployment", "BakedImage", "LaunchTemplateRelease", "LatestPointer"]);
    const [artifact, fleet, image, template, pointer] = built as [Built, Built, Built, Built, Built];
    expect(fleet.dependsOn).to.deep.equal([artifact.self]);
    expect(image.dependsOn).to.deep.equal([fleet.self]);
    expect(image.args.sourceInstanceId, "the image is made from an instance the fleet step reported healthy").to.deep.equal(output("fleet", "imageSourceInstanceId"));
    expect(template.dependsOn).to.deep.equal([image.self]);
    expect(template.args.imageId).to.deep.equal(output("image", "imageId"));
    // The engine starts a resource only once every resource it depends on (explicitly or
    // through an input) succeeded; a failed bake therefore never reaches these two.
    expect(template.args.imageParameterName).to.equal("/zcp/shop/dev/image-id");
    expect(pointer.dependsOn).to.deep.equal([fleet.self, template.self]);
    expect(pointer.args.imageId).to.deep.equal(output("image", "imageId"));
    expect(pointer.args.expectedEtag).to.equal('"etag-1"');
  });

  it("without an image the pointer follows the fleet directly and records no image or template version", async function () {
    const built = await build({ ...PLAN, image: { ...PLAN.image, enabled: false } });
    expect(built.map((b) => b.type)).to.deep.equal(["Artifact", "FleetDeployment", "LatestPointer"]);
    const pointer = built[2] as Built;
    expect(pointer.dependsOn).to.deep.equal([(built[1] as Built).self]);
    expect(pointer.args).to.include({ imageId: "", launchTemplateVersion: 0 });
  });
});
