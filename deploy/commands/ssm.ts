/**
 * What the ssm transport sends, as plain SDK inputs. Nothing here talks to AWS: the executor
 * in `deploy/transports/ssm.ts` sends these and polls.
 */
import type {
  CancelCommandCommandInput,
  DescribeInstanceInformationCommandInput,
  GetCommandInvocationCommandInput,
  ListCommandInvocationsCommandInput,
  ListCommandsCommandInput,
  SendCommandCommandInput,
} from "@aws-sdk/client-ssm";
import { agentEnvironment, type AgentParams } from "../transport.js";
import { EXECUTION_TIMEOUT_PARAMETER, sendCommandParameters, type AgentEnvName } from "../../shared/agent/document.js";
import { fleetSelector } from "../../shared/tags.js";

/** SendCommand accepts at most this many instance ids per call. */
export const MAX_INSTANCE_IDS_PER_COMMAND = 50;
/** SSM's bounds for SendCommand `TimeoutSeconds`. */
export const SSM_MIN_TIMEOUT_S = 30;
export const SSM_MAX_TIMEOUT_S = 2_592_000;
/** SSM truncates `Comment` beyond this. */
const MAX_COMMENT_LENGTH = 100;

/**
 * SendCommand `Parameters`: one single-element list per deploy document parameter, named and
 * checked against its `allowedPattern` by the document's own table, so a value SSM would
 * refuse fails here as a `ConfigError` naming its `ZCP_*` variable, before anything is sent.
 */
export function ssmParameters(params: AgentParams): Record<string, string[]> {
  return sendCommandParameters(agentEnvironment(params) as Record<AgentEnvName, string>);
}

/** Who a command goes to: explicit instance ids (≤ 50) or the app/env tags of a fleet. */
export type CommandTargets = { instanceIds: readonly string[] } | { fleet: { app: string; env: string } };

export interface DeployCommandRequest {
  documentName: string;
  /** Pin a document version. @default the document's default version */
  documentVersion?: string;
  params: AgentParams;
  targets: CommandTargets;
  /**
   * The run's execution timeout, sent as the document's `executionTimeout` parameter (the
   * `timeoutSeconds` of its aws:runShellScript step); SSM kills the agent's process group when
   * it passes. Clamped to SSM's 30 s … 30 days.
   */
  timeoutS: number;
  /**
   * SendCommand `TimeoutSeconds`: how long SSM tries to deliver the command to an instance
   * (SendCommand API reference). @default timeoutS
   */
  deliveryTimeoutS?: number;
  /** A unique token in the Comment, so a command whose response was lost can be found again. */
  clientToken?: string;
  /** SSM `MaxConcurrency`, a count or a percentage. @default every target at once */
  maxConcurrency?: string;
  /** SSM `MaxErrors`, a count or a percentage. @default "0" */
  maxErrors?: string;
}

/**
 * The Comment shown in the SSM console's command history. SendCommand has no idempotency token,
 * so the client token rides in the Comment: the token comes first so the 100-character limit
 * can only ever cut the version, never the token.
 */
export function deployComment(app: string, version: string, clientToken?: string): string {
  return (clientToken ? `zcp ${clientToken} deploy ${app} ${version}` : `zcp deploy ${app} ${version}`).slice(0, MAX_COMMENT_LENGTH);
}

export function clampTimeoutSeconds(timeoutS: number): number {
  const whole = Math.ceil(Number.isFinite(timeoutS) ? timeoutS : SSM_MIN_TIMEOUT_S);
  return Math.min(SSM_MAX_TIMEOUT_S, Math.max(SSM_MIN_TIMEOUT_S, whole));
}

/** One SendCommand for one group of targets. */
export function buildSendCommandInput(req: DeployCommandRequest): SendCommandCommandInput {
  const base: SendCommandCommandInput = {
    DocumentName: req.documentName,
    Parameters: { ...ssmParameters(req.params), [EXECUTION_TIMEOUT_PARAMETER]: [String(clampTimeoutSeconds(req.timeoutS))] },
    TimeoutSeconds: clampTimeoutSeconds(req.deliveryTimeoutS ?? req.timeoutS),
    Comment: deployComment(req.params.app, req.params.version, req.clientToken),
    // Output stays in SSM (and in the agent's deploy log on the instance); nothing is
    // copied to CloudWatch Logs, which the release role is not allowed to write.
    CloudWatchOutputConfig: { CloudWatchOutputEnabled: false },
    MaxErrors: req.maxErrors ?? "0",
  };
  if (req.documentVersion) base.DocumentVersion = req.documentVersion;
  if ("instanceIds" in req.targets) {
    const ids = [...req.targets.instanceIds];
    if (ids.length === 0 || ids.length > MAX_INSTANCE_IDS_PER_COMMAND) {
      throw new RangeError(`SendCommand takes 1..${MAX_INSTANCE_IDS_PER_COMMAND} instance ids, got ${ids.length}`);
    }
    return { ...base, InstanceIds: ids, MaxConcurrency: req.maxConcurrency ?? String(ids.length) };
  }
  const { app, env } = req.targets.fleet;
  return {
    ...base,
    Targets: fleetSelector(app, env).map((f) => ({ Key: f.key, Values: f.values })),
    MaxConcurrency: req.maxConcurrency ?? "100%",
  };
}

/** Splits ids into SendCommand-sized groups, in order, without duplicates. */
export function chunkInstanceIds(ids: readonly string[], size = MAX_INSTANCE_IDS_PER_COMMAND): string[][] {
  const unique = [...new Set(ids)];
  const chunks: string[][] = [];
  for (let i = 0; i < unique.length; i += size) chunks.push(unique.slice(i, i + size));
  return chunks;
}

/**
 * Shares a fleet-wide rate limit among chunked commands. SSM applies MaxConcurrency and
 * MaxErrors per command, so "10" sent with each of three commands would allow 30; counts are
 * split in proportion to each chunk's size (never above the total), percentages already
 * scale and pass through unchanged.
 */
export function shareRateLimit(
  value: string | undefined,
  chunkSize: number,
  total: number,
  kind: "concurrency" | "errors",
): string | undefined {
  // MaxErrors is not split: SSM counts errors per command, and a share rounded down would let
  // SSM mark invocations Terminated that zcp's own fleet-wide limit still tolerates ("Run
  // commands at scale", SSM user guide). zcp decides the release's fate from the outcomes.
  if (kind === "errors") return value;
  if (value === undefined || value.endsWith("%") || total <= chunkSize) return value;
  const count = Number(value);
  if (!Number.isInteger(count) || count < 0) return value;
  const share = Math.floor((count * chunkSize) / total);
  // A command needs at least one concurrent invocation to make progress at all.
  return String(kind === "concurrency" ? Math.max(1, share) : share);
}

/** One status page for one command: every invocation with its plugin output. */
export function buildListCommandInvocationsInput(commandId: string, nextToken?: string): ListCommandInvocationsCommandInput {
  return {
    CommandId: commandId,
    Details: true,
    MaxResults: MAX_INSTANCE_IDS_PER_COMMAND,
    ...(nextToken ? { NextToken: nextToken } : {}),
  };
}

/** The command's own status and target count (used with tag targets, where ids are unknown). */
export function buildListCommandsInput(commandId: string): ListCommandsCommandInput {
  return { CommandId: commandId };
}

/** Full stdout of one instance, when the list entry's output was truncated or missing. */
export function buildGetCommandInvocationInput(commandId: string, instanceId: string): GetCommandInvocationCommandInput {
  return { CommandId: commandId, InstanceId: instanceId };
}

/** Stops a command that outlived the runner's deadline, so it cannot switch instances later. */
export function buildCancelCommandInput(commandId: string, instanceIds?: readonly string[]): CancelCommandCommandInput {
  return { CommandId: commandId, ...(instanceIds && instanceIds.length > 0 ? { InstanceIds: [...instanceIds] } : {}) };
}

/** Which of these instances SSM manages, and whether their agent is online (≤ 50 ids a call). */
export function buildDescribeInstanceInformationInput(instanceIds: readonly string[], nextToken?: string): DescribeInstanceInformationCommandInput {
  return {
    Filters: [{ Key: "InstanceIds", Values: [...instanceIds] }],
    MaxResults: MAX_INSTANCE_IDS_PER_COMMAND,
    ...(nextToken ? { NextToken: nextToken } : {}),
  };
}

/** Commands of this document sent since `since`, to find one whose SendCommand response was lost. */
export function buildFindCommandInput(documentName: string, since: Date): ListCommandsCommandInput {
  return {
    Filters: [
      { key: "DocumentName", value: documentName },
      { key: "InvokedAfter", value: since.toISOString() },
    ],
    MaxResults: 50,
  };
}
