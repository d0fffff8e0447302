/**
 * `zcp`: the release runner's command line. The single place where errors become exit codes.
 */
// First: it defers modules the Pulumi SDK loads but a release never uses (sdk-preload.ts).
import "./sdk-preload.js";
import * as fs from "node:fs";
import * as path from "node:path";
import { ConfigError, ExitCode, ReleaseFailedError, ZcpError, exitCodeFor } from "../shared/errors.js";
import { commandHelp, parseArgs, USAGE, type Command } from "./cli-args.js";
import { buildAndUpload } from "./build/publish.js";
import { configValue, formatConfigValue, readStackConfig } from "./config-get.js";
import { createAwsClients, destroyAwsClients } from "./aws/clients.js";
import { resolveEnvironment } from "./environments.js";
import { formatPromote, promoteArtifact } from "./promote.js";
import { stopLocalEnvironment } from "./local/environment.js";
import {
  appendStepSummary,
  failureMarkdown,
  formatHistory,
  formatPreview,
  formatReleaseSummary,
  formatStatus,
  history,
  preview,
  release,
  releaseMarkdown,
  rollbackTarget,
  status,
  useProjectTools,
} from "./runner.js";
import { copyFoundationState, formatFoundationCopy } from "./state-copy.js";
import { cursorControlEnabled, paintFor } from "./style.js";
import { consoleOutput } from "./view.js";
import { mark, markProcessStart } from "./timings.js";

function isLive(json: boolean): boolean {
  return !json && cursorControlEnabled(process.stderr);
}

/** The installed package's version (package.json sits two levels above dist/deploy/). */
export function zcpVersion(): string {
  const pkg = JSON.parse(fs.readFileSync(path.join(__dirname, "..", "..", "package.json"), "utf8")) as { version?: unknown };
  return typeof pkg.version === "string" ? pkg.version : "unknown";
}

async function run(cmd: Exclude<Command, { name: "help" } | { name: "version" }>): Promise<void> {
  const out = consoleOutput(cmd.json);
  const log = (m: string) => out.info(m);
  if (cmd.name === "local-down") {
    await stopLocalEnvironment(log);
    return;
  }
  useProjectTools();
  if (cmd.name === "config-get") {
    // Before any AWS session: only the stack's config file is read.
    const config = await readStackConfig(cmd.env, process.env.ZCP_PROJECT_DIR ?? process.cwd());
    const value = configValue(config, cmd.key);
    out.result(cmd.json ? JSON.stringify(value ?? null) : formatConfigValue(value));
    return;
  }
  if (cmd.name === "state-copy") {
    // The backend is the one the Pulumi CLI is logged in to; zcp itself calls no AWS API here.
    const copy = await copyFoundationState(cmd.env, process.env.ZCP_PROJECT_DIR ?? process.cwd(), cmd.to);
    out.result(cmd.json ? JSON.stringify(copy, null, 2) : formatFoundationCopy(copy));
    return;
  }
  if (cmd.name === "promote") {
    const to = await resolveEnvironment(cmd.to, log);
    // With --from-bucket the source stack is not opened (it lives in the other account's
    // state backend); the bucket is read with this session, through its bucket policy.
    const from = cmd.fromBucket === undefined ? await resolveEnvironment(cmd.from, log) : undefined;
    const fromClients = createAwsClients({ region: from?.outputs.region ?? to.outputs.region });
    const toClients = createAwsClients({ region: to.outputs.region });
    try {
      const r = await promoteArtifact(
        from
          ? { environment: from.name, app: from.outputs.app, bucket: from.outputs.bucket, s3: fromClients.s3 }
          : { environment: cmd.from, app: to.outputs.app, bucket: cmd.fromBucket ?? "", s3: fromClients.s3 },
        { environment: to.name, app: to.outputs.app, bucket: to.outputs.bucket, s3: toClients.s3 },
        cmd.version,
        log,
      );
      out.result(cmd.json ? JSON.stringify(r, null, 2) : formatPromote(r));
      appendStepSummary(`### zcp promote: ${r.version}\n\n\`\`\`\n${formatPromote(r)}\n\`\`\``);
    } finally {
      destroyAwsClients(fromClients);
      destroyAwsClients(toClients);
    }
    return;
  }
  const ctx = await resolveEnvironment(cmd.env, log);
  mark("runner: environment resolved");
  switch (cmd.name) {
    case "build": {
      const target = { ...(cmd.pythonPlatform ? { platform: cmd.pythonPlatform } : {}), ...(cmd.pythonVersion ? { pythonVersion: cmd.pythonVersion } : {}) };
      const built = await buildAndUpload(
        ctx,
        { version: cmd.version, source: cmd.source !== undefined ? { kind: "dir", dir: cmd.source } : ctx.defaultSource, pythonTarget: target },
        log,
      );
      // The sha256 alone on stdout: `sha=$(zcp build …)` in a workflow.
      out.result(cmd.json ? JSON.stringify(built, null, 2) : built.sha256);
      appendStepSummary(`### zcp build: ${built.version}\n\n${built.uri}, sha256 \`${built.sha256}\``);
      return;
    }
    case "release":
    case "rollback": {
      const version = cmd.name === "release" ? cmd.version : await rollbackTarget(ctx, cmd.to);
      const req =
        cmd.name === "release"
          ? {
              version,
              kind: "release" as const,
              skipImage: cmd.skipImage,
              ...(cmd.prebuilt ? { existingArtifactOnly: true } : {}),
              ...(cmd.source !== undefined ? { source: { kind: "dir" as const, dir: cmd.source } } : {}),
              ...(cmd.canary !== undefined ? { canary: cmd.canary } : {}),
              ...(cmd.batch !== undefined ? { batch: cmd.batch } : {}),
            }
          : { version, kind: "rollback" as const, existingArtifactOnly: true };
      try {
        const summary = await release(ctx, req, out, { live: isLive(cmd.json) });
        out.result(cmd.json ? JSON.stringify(summary, null, 2) : formatReleaseSummary(summary));
        appendStepSummary(releaseMarkdown(summary));
      } catch (err) {
        if (err instanceof ZcpError) appendStepSummary(failureMarkdown(ctx.name, version, err.message));
        throw err;
      }
      return;
    }
    case "preview": {
      const version = cmd.version ?? `preview-${Date.now().toString(36)}`;
      const p = await preview(ctx, { version, ...(cmd.source !== undefined ? { source: { kind: "dir" as const, dir: cmd.source } } : {}) }, out);
      out.result(cmd.json ? JSON.stringify(p, null, 2) : formatPreview(p));
      appendStepSummary(`### zcp preview: ${p.environment}\n\n\`\`\`\n${formatPreview(p)}\n\`\`\``);
      return;
    }
    case "status": {
      const s = await status(ctx);
      out.result(cmd.json ? JSON.stringify(s, null, 2) : formatStatus(s));
      return;
    }
    case "history": {
      const h = await history(ctx);
      out.result(cmd.json ? JSON.stringify(h, null, 2) : formatHistory(ctx.name, h));
      return;
    }
  }
}

export async function main(argv: readonly string[]): Promise<number> {
  markProcessStart("runner: process start");
  mark("runner: modules loaded");
  let cmd: Command;
  try {
    cmd = parseArgs(argv);
  } catch (err) {
    process.stderr.write(`zcp: ${paintFor(process.stderr).red("bad input")}: ${(err as Error).message}\n`);
    return exitCodeFor(err);
  }
  if (cmd.name === "help") {
    process.stdout.write(`${cmd.topic !== undefined ? commandHelp(cmd.topic) : USAGE}\n`);
    return ExitCode.Ok;
  }
  if (cmd.name === "version") {
    process.stdout.write(`${zcpVersion()}\n`);
    return ExitCode.Ok;
  }
  try {
    await run(cmd);
    return ExitCode.Ok;
  } catch (err) {
    const code = exitCodeFor(err);
    const label =
      err instanceof ConfigError
        ? "bad input"
        : err instanceof ReleaseFailedError
          ? "release failed"
          : err instanceof ZcpError
            ? err.name
            : "unexpected error";
    process.stderr.write(`zcp: ${paintFor(process.stderr).red(label)}: ${(err as Error).message}\n`);
    if (!(err instanceof ZcpError)) {
      process.stderr.write(process.env.ZCP_DEBUG ? `${(err as Error).stack ?? ""}\n` : "zcp: rerun with ZCP_DEBUG=1 for the stack trace\n");
    }
    return code;
  }
}
