/**
 * The CrossGuard policy pack (policy/) enforced by the real Pulumi engine, started the way CI
 * starts it: `--policy-pack policy`, the pack's directory, run by the Node.js language host.
 *
 * The AWS provider plugin cannot be downloaded here, so a stand-in `aws` provider
 * (tests/fixtures/policy/aws-stand-in-provider.ts) serves the program's @pulumi/aws
 * resources from a throwaway PULUMI_HOME. Everything else is real: the CLI, the file
 * backend, the language host, the policy pack and zcp's own ArtifactBucket component.
 */
import { expect } from "chai";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import type { Stack } from "@pulumi/pulumi/automation/index.js";
import { parse as parseYaml } from "yaml";
import { REPO_ROOT } from "../helpers/emulator.js";
import { withStack } from "../helpers/stack.js";
import { policyFixtureProgram, type PolicyFixtureVariant } from "../fixtures/policy/program.js";

const POLICY_PACK = path.join(REPO_ROOT, "policy");
const STAND_IN = path.join(REPO_ROOT, "dist", "tests", "fixtures", "policy", "aws-stand-in-provider.js");

function shellQuote(value: string): string {
  return `'${value.replace(/'/g, `'\\''`)}'`;
}

/**
 * A PULUMI_HOME whose plugin cache holds the stand-in as `aws` at the version @pulumi/aws
 * asks for: with plugin downloads off and ambient plugins ignored, that is where the engine
 * finds `pulumi-resource-aws`.
 */
function pulumiHomeWithStandIn(): string {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), "zcp-policy-home-"));
  const awsPackage = JSON.parse(fs.readFileSync(path.join(REPO_ROOT, "node_modules", "@pulumi", "aws", "package.json"), "utf8")) as {
    version: string;
  };
  const pluginDir = path.join(home, "plugins", `resource-aws-v${awsPackage.version}`);
  fs.mkdirSync(pluginDir, { recursive: true });
  fs.writeFileSync(
    path.join(pluginDir, "pulumi-resource-aws"),
    `#!/bin/sh\nZCP_AWS_STAND_IN_VERSION=${shellQuote(awsPackage.version)} exec ${shellQuote(process.execPath)} ${shellQuote(STAND_IN)} "$@"\n`,
    { mode: 0o755 },
  );
  return home;
}

/** The CLI's output of a failed run, which the automation API puts in the error's message. */
async function failureOutput(run: Promise<unknown>): Promise<string> {
  try {
    await run;
  } catch (err) {
    return err instanceof Error ? err.message : String(err);
  }
  throw new Error("expected the engine run to fail, but it succeeded");
}

describe("the policy pack on the real engine (stand-in aws provider)", function () {
  let pulumiHome: string;
  let env: Record<string, string>;

  before(function () {
    pulumiHome = pulumiHomeWithStandIn();
    env = { PULUMI_HOME: pulumiHome, PULUMI_IGNORE_AMBIENT_PLUGINS: "true" };
  });

  after(function () {
    fs.rmSync(pulumiHome, { recursive: true, force: true });
  });

  /** Deploys the compliant program with the pack, then switches the stack to `variant`. */
  async function deployCompliantThen(stack: Stack, variant: PolicyFixtureVariant): Promise<void> {
    const up = await stack.up({ policyPacks: [POLICY_PACK], onOutput: () => undefined });
    expect(up.summary.result).to.equal("succeeded");
    stack.workspace.program = policyFixtureProgram(variant);
  }

  it("loads the compiled pack at the version PulumiPolicy.yaml declares", function () {
    // Node loads the pack directory through package.json's main, and @pulumi/policy takes
    // the version from there; PulumiPolicy.yaml's must not drift from it.
    const pack = JSON.parse(fs.readFileSync(path.join(POLICY_PACK, "package.json"), "utf8")) as { main: string; version: string };
    const manifest = parseYaml(fs.readFileSync(path.join(POLICY_PACK, "PulumiPolicy.yaml"), "utf8")) as { main: string; version: string };
    expect(pack.version).to.equal(manifest.version);
    expect(pack.main).to.equal(manifest.main);
    expect(fs.existsSync(path.resolve(POLICY_PACK, pack.main)), `${pack.main} is built`).to.equal(true);
  });

  it("previews and deploys a compliant foundation with the pack enforced", async function () {
    await withStack(
      policyFixtureProgram("compliant"),
      async ({ stack }) => {
        // A first preview knows no ids yet; every rule still runs, and none is violated.
        const preview = await stack.preview({ policyPacks: [POLICY_PACK], onOutput: () => undefined });
        expect(preview.stdout).to.match(/zcp@v0\.1\.0 \(local: /);
        expect(preview.stdout).not.to.match(/\[(mandatory|advisory)\]/);
        expect(preview.changeSummary.create).to.equal(10);

        const up = await stack.up({ policyPacks: [POLICY_PACK], onOutput: () => undefined });
        expect(up.summary.result).to.equal("succeeded");
        expect(up.stdout).not.to.include("[mandatory]");

        // With the stack deployed every value is known: all rules run, and all pass.
        const again = await stack.preview({ policyPacks: [POLICY_PACK], onOutput: () => undefined });
        expect(again.stdout).to.match(/zcp@v0\.1\.0 \(local: /);
        expect(again.stdout).not.to.match(/\[(mandatory|advisory)\]/);
        expect(again.changeSummary).to.deep.equal({ same: 10 });
      },
      { extraEnv: env },
    );
  });

  const violations: { variant: PolicyFixtureVariant; change: string; rule: string; message: RegExp; unguarded: Record<string, number> }[] = [
    {
      variant: "wildcard-trust",
      change: "the release role trusts every workflow of the repository",
      rule: "zcp-oidc-trust-pinned",
      message: /uses StringLike on token\.actions\.githubusercontent\.com:sub/,
      unguarded: { same: 9, update: 1 },
    },
    {
      variant: "bucket-without-block",
      change: "a bucket without a public access block is added",
      rule: "zcp-bucket-not-public-stack",
      message: /bucket scratch: has no BucketPublicAccessBlock/,
      unguarded: { same: 10, create: 1 },
    },
  ];

  for (const v of violations) {
    it(`fails the preview when ${v.change} (${v.rule}), which previews fine without the pack`, async function () {
      await withStack(
        policyFixtureProgram("compliant"),
        async ({ stack }) => {
          await deployCompliantThen(stack, v.variant);

          const output = await failureOutput(stack.preview({ policyPacks: [POLICY_PACK], onOutput: () => undefined }));
          expect(output).to.include(`[mandatory]  ${v.rule}`);
          expect(output).to.match(v.message);

          // The same change, previewed without --policy-pack, goes through.
          const unguarded = await stack.preview({ onOutput: () => undefined });
          expect(unguarded.changeSummary).to.deep.equal(v.unguarded);
        },
        { extraEnv: env },
      );
    });
  }

  it("fails the first preview of a new stack whose bucket has no public access block", async function () {
    // Nothing exists yet, so the artifact bucket's settings name an id no one knows; the
    // stack rules must still judge the bucket that has no settings at all.
    await withStack(
      policyFixtureProgram("bucket-without-block"),
      async ({ stack }) => {
        const output = await failureOutput(stack.preview({ policyPacks: [POLICY_PACK], onOutput: () => undefined }));
        expect(output).to.include("[mandatory]  zcp-bucket-not-public-stack");
        expect(output).to.match(/bucket scratch: has no BucketPublicAccessBlock/);
        expect(output).not.to.match(/bucket artifacts-bucket:/);
      },
      { extraEnv: env },
    );
  });

  it("refuses `pulumi up` of a violating change and leaves the deployed stack as it was", async function () {
    await withStack(
      policyFixtureProgram("compliant"),
      async ({ stack }) => {
        await deployCompliantThen(stack, "wildcard-trust");
        const before = await stack.exportStack();

        const output = await failureOutput(stack.up({ policyPacks: [POLICY_PACK], onOutput: () => undefined }));
        expect(output).to.include("[mandatory]  zcp-oidc-trust-pinned");

        const after = await stack.exportStack();
        const trustOf = (state: typeof before) =>
          (state.deployment as { resources?: { type: string; outputs?: { assumeRolePolicy?: string } }[] }).resources?.find(
            (r) => r.type === "aws:iam/role:Role",
          )?.outputs?.assumeRolePolicy;
        expect(trustOf(after)).to.equal(trustOf(before));
        expect(trustOf(after)).to.include("StringEquals").and.not.include("StringLike");
      },
      { extraEnv: env },
    );
  });
});
