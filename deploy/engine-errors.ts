/**
 * Turns automation-API failures into zcp's typed errors. Classification is by `instanceof`
 * on the automation API's own error classes, never by matching stderr text here.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { CommandError, ConcurrentUpdateError, StackNotFoundError } from "@pulumi/pulumi/automation/index.js";
import { ConfigError, ReleaseFailedError, ReleaseLockedError, ZcpError } from "../shared/errors.js";

export interface LockHolder {
  pid?: number;
  username?: string;
  hostname?: string;
  timestamp?: string;
}

/**
 * Reads who holds a file-backend stack lock. The backend writes one JSON file per lock under
 * `.pulumi/locks/<org>/<project>/<stack>/`; the newest is the holder.
 */
export function readFileBackendLockHolder(backendDir: string, project: string, stack: string): LockHolder | undefined {
  const candidates = [
    path.join(backendDir, ".pulumi", "locks", "organization", project, stack),
    path.join(backendDir, ".pulumi", "locks", project, stack),
    path.join(backendDir, ".pulumi", "locks", stack),
  ];
  for (const dir of candidates) {
    let files: string[];
    try {
      files = fs.readdirSync(dir).filter((f) => f.endsWith(".json"));
    } catch {
      continue;
    }
    const newest = files
      .map((f) => ({ f, m: fs.statSync(path.join(dir, f)).mtimeMs }))
      .sort((a, b) => b.m - a.m)[0];
    if (!newest) continue;
    try {
      const raw = JSON.parse(fs.readFileSync(path.join(dir, newest.f), "utf8")) as Record<string, unknown>;
      return {
        ...(typeof raw.pid === "number" ? { pid: raw.pid } : {}),
        ...(typeof raw.username === "string" ? { username: raw.username } : {}),
        ...(typeof raw.hostname === "string" ? { hostname: raw.hostname } : {}),
        ...(typeof raw.timestamp === "string" ? { timestamp: raw.timestamp } : {}),
      };
    } catch {
      return {};
    }
  }
  return undefined;
}

export function describeLockHolder(h: LockHolder | undefined): string {
  if (!h) return "another process";
  const who = [h.username, h.hostname].filter(Boolean).join("@") || "unknown";
  return `${who}${h.pid ? ` pid ${h.pid}` : ""}${h.timestamp ? ` since ${h.timestamp}` : ""}`;
}

export interface ClassifyContext {
  environment: string;
  /** For naming the lock holder on a file backend. */
  fileBackend?: { dir: string; project: string; stack: string };
}

/** Maps an error thrown by a stack operation to a zcp error (idempotent for zcp errors). */
export function classifyEngineError(err: unknown, ctx: ClassifyContext): ZcpError {
  if (err instanceof ZcpError) return err;
  if (err instanceof ConcurrentUpdateError) {
    const holder = ctx.fileBackend
      ? describeLockHolder(readFileBackendLockHolder(ctx.fileBackend.dir, ctx.fileBackend.project, ctx.fileBackend.stack))
      : "another update (see `pulumi stack history`)";
    return new ReleaseLockedError(ctx.environment, holder, { cause: err });
  }
  if (err instanceof StackNotFoundError) {
    return new ConfigError("--env", `no release stack for environment "${ctx.environment}"`, { cause: err });
  }
  if (err instanceof CommandError) {
    return new ReleaseFailedError(summariseCommandError(err), { cause: err });
  }
  return new ReleaseFailedError(err instanceof Error ? err.message : String(err), { cause: err });
}

/** The engine's stderr is long; keep the lines a person needs. */
export function summariseCommandError(err: CommandError): string {
  const text = err.message;
  const lines = text
    .split("\n")
    .map((l) => l.trimEnd())
    .filter((l) => /error:|failed|rolled back|Error:/i.test(l))
    .filter((l) => !/^\s*at /.test(l));
  const unique = [...new Set(lines)].slice(0, 20);
  return unique.length > 0 ? unique.join("\n") : text.split("\n").slice(-10).join("\n");
}
