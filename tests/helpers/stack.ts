/**
 * Runs a test body against a throwaway stack on the real Pulumi engine: a temporary
 * `file://` backend, a unique stack name, and a `finally` that destroys the stack and removes
 * it and its backend whatever the body did.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as crypto from "node:crypto";
import { LocalWorkspace, type PulumiFn, type Stack } from "@pulumi/pulumi/automation";
import { REPO_ROOT } from "./emulator.js";

export interface StackContext {
  stack: Stack;
  backendDir: string;
  stackName: string;
  projectName: string;
}

export function uniqueName(prefix: string): string {
  return `${prefix}-${Date.now().toString(36)}-${crypto.randomBytes(3).toString("hex")}`;
}

/** Environment every engine run in tests gets (no update checks, no plugin downloads). */
export function engineEnv(backendUrl: string): Record<string, string> {
  return {
    PULUMI_BACKEND_URL: backendUrl,
    PULUMI_CONFIG_PASSPHRASE: process.env.PULUMI_CONFIG_PASSPHRASE ?? "zcp-local-only",
    PULUMI_SKIP_UPDATE_CHECK: "true",
    PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION: "true",
    PULUMI_HOME: process.env.PULUMI_HOME ?? path.join(REPO_ROOT, ".tools", "pulumi-home"),
  };
}

export async function withStack<T>(
  program: PulumiFn,
  body: (ctx: StackContext) => Promise<T>,
  opts: { projectName?: string; backendDir?: string; extraEnv?: Record<string, string> } = {},
): Promise<T> {
  const ownBackend = opts.backendDir === undefined;
  const backendDir = opts.backendDir ?? fs.mkdtempSync(path.join(os.tmpdir(), "zcp-state-"));
  const projectName = opts.projectName ?? "zcp-test";
  const stackName = uniqueName("t");
  // A workspace writes Pulumi.yaml into its work dir, so it gets its own; the engine starts
  // dynamic providers from ./node_modules of that dir, hence the link to ours.
  const workDir = fs.mkdtempSync(path.join(os.tmpdir(), "zcp-ws-"));
  fs.symlinkSync(path.join(REPO_ROOT, "node_modules"), path.join(workDir, "node_modules"));
  const stack = await LocalWorkspace.createOrSelectStack(
    { stackName, projectName, program },
    {
      workDir,
      projectSettings: { name: projectName, runtime: "nodejs", backend: { url: `file://${backendDir}` } },
      envVars: { ...engineEnv(`file://${backendDir}`), ...(opts.extraEnv ?? {}) },
    },
  );
  try {
    return await body({ stack, backendDir, stackName, projectName });
  } finally {
    try {
      await stack.cancel().catch(() => undefined);
      await stack.destroy({ onOutput: () => undefined });
      await stack.workspace.removeStack(stackName);
    } finally {
      if (ownBackend) fs.rmSync(backendDir, { recursive: true, force: true });
      fs.rmSync(workDir, { recursive: true, force: true });
    }
  }
}
