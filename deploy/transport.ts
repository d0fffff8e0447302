/**
 * How a deploy command reaches instances. Two implementations: `ssm` (SendCommand with the
 * zcp deploy document) and `local` (runs the same agent script for each instance of a local
 * fleet). FleetDeployment only ever talks to this interface.
 */

import type { AgentParams } from "../shared/agent/params.js";
export type { AgentParams, AgentRuntime } from "../shared/agent/params.js";

/** The JSON line the agent prints last. */
export interface AgentResult {
  /** `prepared` answers ZCP_ACTION=prepare-image. */
  status: "deployed" | "unchanged" | "rolled_back" | "failed" | "prepared";
  version: string;
  previous: string | null;
  duration_ms: number;
  [extra: string]: unknown;
}

export type OutcomeStatus =
  | AgentResult["status"]
  | "rejected"
  | "locked"
  | "timed_out"
  | "undeliverable"
  | "cancelled"
  | "error";

export interface InstanceOutcome {
  instanceId: string;
  /** True when the instance now runs the requested version and is healthy. */
  ok: boolean;
  status: OutcomeStatus;
  result?: AgentResult;
  /** The agent's exit code, when known. */
  exitCode?: number;
  /** One readable line: what happened on this instance. */
  message: string;
  durationMs: number;
}

export interface RunOptions {
  /**
   * How long one instance's run may take once it started: the deploy document's
   * `executionTimeout`, after which SSM kills the agent's process group.
   */
  timeoutS: number;
  /** How long SSM may take to deliver the command (SendCommand `TimeoutSeconds`). @default timeoutS */
  deliveryTimeoutS?: number;
  /** SSM MaxConcurrency (count or percent). @default all at once */
  maxConcurrency?: string;
  /** SSM MaxErrors (count or percent). @default "0" */
  maxErrors?: string;
  onProgress?: (event: ProgressEvent) => void;
}

export interface ProgressEvent {
  instanceId: string;
  phase: "sent" | "running" | "done";
  status?: OutcomeStatus;
  elapsedMs: number;
}

export interface Transport {
  readonly kind: "ssm" | "local";
  /** Runs the agent on each instance with the same parameters; never throws for a per-instance failure. */
  runAgent(instanceIds: readonly string[], params: AgentParams, opts: RunOptions): Promise<InstanceOutcome[]>;
}

/** Maps AgentParams to the agent's environment variables. */
export function agentEnvironment(p: AgentParams): Record<string, string> {
  return {
    ZCP_APP: p.app,
    ZCP_VERSION: p.version,
    ZCP_ARTIFACT: p.artifact,
    ZCP_SHA256: p.sha256,
    ZCP_APP_DIR: p.appDir,
    ZCP_APP_USER: p.appUser,
    ZCP_SERVICE: p.service,
    ZCP_PROCESS_MANAGER: p.processManager,
    ZCP_HEALTH_URL: p.healthUrl,
    ZCP_HEALTH_TIMEOUT_S: String(p.healthTimeoutS),
    ZCP_KEEP_RELEASES: String(p.keepReleases),
    ZCP_SEQUENCE: String(p.sequence ?? 0),
    ...(p.action && p.action !== "deploy" ? { ZCP_ACTION: p.action } : {}),
  };
}

/**
 * Whether the agent did what it was asked on this instance: the requested version is current
 * and healthy (a deploy), or the instance may be imaged (prepare-image).
 */
export function agentSucceeded(result: AgentResult | undefined, params: Pick<AgentParams, "version" | "action">): boolean {
  if (!result || result.version !== params.version) return false;
  if (params.action === "prepare-image") return result.status === "prepared";
  return result.status === "deployed" || result.status === "unchanged";
}

/** Finds the agent's JSON result: the last line of output that parses as one. */
export function parseAgentResult(stdout: string): AgentResult | undefined {
  const lines = stdout.trimEnd().split("\n");
  for (let i = lines.length - 1; i >= 0; i--) {
    const line = lines[i]?.trim();
    if (!line || !line.startsWith("{")) continue;
    try {
      const v = JSON.parse(line) as Partial<AgentResult>;
      if (typeof v.status === "string" && typeof v.version === "string") return v as AgentResult;
    } catch {
      // not the result line
    }
  }
  return undefined;
}

/** Maps the agent's exit code and result to an outcome status. */
export function outcomeFromAgent(exitCode: number, result: AgentResult | undefined): OutcomeStatus {
  // Exit 2 and 3 say more than the result line's `failed`: nothing was touched.
  if (exitCode === 2 || result?.reason === "rejected" || result?.reason === "checksum") return "rejected";
  if (exitCode === 3 || result?.reason === "locked") return "locked";
  if (result) return result.status;
  return "error";
}
