/**
 * The ssm transport: runs the deploy agent on instances through SSM Run Command with the zcp
 * deploy document, then polls until every invocation reached a final state.
 *
 * Status polling costs one ListCommandInvocations page per unfinished command per poll (a
 * command holds at most 50 instances, one page), never one call per instance. Full output is
 * fetched with GetCommandInvocation only for a finished instance whose list entry did not
 * carry the agent's result line (the list truncates plugin output).
 */
import { randomUUID } from "node:crypto";
import {
  CancelCommandCommand,
  DescribeInstanceInformationCommand,
  GetCommandInvocationCommand,
  ListCommandInvocationsCommand,
  ListCommandsCommand,
  SendCommandCommand,
  type CommandInvocation,
  type SendCommandCommandInput,
  type SSMClient,
} from "@aws-sdk/client-ssm";
import {
  buildCancelCommandInput,
  buildDescribeInstanceInformationInput,
  buildFindCommandInput,
  buildGetCommandInvocationInput,
  buildListCommandInvocationsInput,
  buildListCommandsInput,
  buildSendCommandInput,
  chunkInstanceIds,
  clampTimeoutSeconds,
  shareRateLimit,
  ssmParameters,
  type CommandTargets,
} from "../commands/ssm.js";
import { awsCall, awsErrorName, describeIds, isThrottledOrTransient, pacingOptions, type Pacing } from "../aws/call.js";
import {
  agentSucceeded,
  outcomeFromAgent,
  parseAgentResult,
  type AgentParams,
  type AgentResult,
  type InstanceOutcome,
  type OutcomeStatus,
  type ProgressEvent,
  type RunOptions,
  type Transport,
} from "../transport.js";
import { DeadlineExceededError, StepError, ZcpError, describeError } from "../../shared/errors.js";
import { isThrottleOrTransient, poll, retry } from "../../shared/retry.js";

export interface SsmTransportOptions {
  ssm: SSMClient;
  /**
   * Client used for SendCommand only, built with the SDK's retries off (`maxAttempts: 1`), so a
   * request whose response was lost is never resent blindly by the SDK: zcp's token-checked
   * resend is SendCommand's one retry layer. Required, so no caller falls back to a retrying
   * client and multiplies the sends of one request.
   */
  sendCommandClient: SSMClient;
  /** The zcp deploy document (`deployDocumentName(app, env)`, a foundation output). */
  documentName: string;
  /** Pin a document version. @default the document's default version */
  documentVersion?: string;
  /** Delay before the first status poll (ms). @default 2000 */
  pollInitialDelayMs?: number;
  /** Longest delay between status polls (ms). @default 15000 */
  pollMaxDelayMs?: number;
  /** Time allowed beyond the command timeouts before the runner stops waiting (ms). @default 120000 */
  deadlineGraceMs?: number;
  /** Clock and progress log; tests inject an instant sleep. @default real time, no log */
  pacing?: Pacing;
}

/** Invocation states after which SSM changes nothing more. */
const FINAL_STATES = new Set([
  "Success",
  "Failed",
  "TimedOut",
  "Cancelled",
  "Undeliverable",
  "Terminated",
  "DeliveryTimedOut",
  "ExecutionTimedOut",
  "AccessDenied",
  "InvalidPlatform",
]);
/** Detailed states that say more than the summary `Status` does; they win when present. */
const SPECIFIC_FINAL_STATES = new Set([
  "Undeliverable",
  "Terminated",
  "DeliveryTimedOut",
  "ExecutionTimedOut",
  "AccessDenied",
  "InvalidPlatform",
]);
const FINAL_COMMAND_STATES = new Set(["Success", "Failed", "TimedOut", "Cancelled"]);
/**
 * SendCommand's one retry layer (its client has the SDK's retries off): attempts and backoff
 * of the token-checked resend.
 */
const SEND_COMMAND_RETRY = { maxAttempts: 6, initialDelayMs: 500, maxDelayMs: 10_000 } as const;
/** Errors that mean "SSM has not made the command or invocation visible yet". */
const NOT_VISIBLE_YET = new Set(["InvocationDoesNotExist", "InvalidCommandId"]);
/** SSM's separator between stdout and stderr in a list entry's plugin output. */
const STDERR_MARKER = "\n----------ERROR-------";
const TRUNCATION_MARKER = "---Output truncated---";

/**
 * The state SSM reports for an invocation: the detailed one when it is more specific.
 * StatusDetails is spelled with spaces ("Delivery Timed Out", "Execution Timed Out", "Access
 * Denied": CommandInvocation API reference, "Understanding command statuses"); it is compared
 * without them, so the compact form some tools print reads the same.
 */
export function invocationState(inv: Pick<CommandInvocation, "Status" | "StatusDetails">): string {
  const details = (inv.StatusDetails ?? "").replace(/ /g, "");
  if (SPECIFIC_FINAL_STATES.has(details)) return details;
  return inv.Status ?? (details || "Pending");
}

export function isFinalInvocationState(state: string): boolean {
  return FINAL_STATES.has(state);
}

/** stdout, stderr and exit code of an invocation's (single) plugin, from a list entry. */
export function pluginOutput(inv: CommandInvocation): { stdout: string; stderr: string; exitCode?: number; truncated: boolean } {
  const plugins = inv.CommandPlugins ?? [];
  const plugin = plugins[plugins.length - 1];
  const output = plugin?.Output ?? "";
  const at = output.indexOf(STDERR_MARKER);
  const stdout = at >= 0 ? output.slice(0, at) : output;
  const stderr = at >= 0 ? output.slice(at + STDERR_MARKER.length) : "";
  const code = plugin?.ResponseCode;
  return {
    stdout,
    stderr,
    ...(code !== undefined && code >= 0 ? { exitCode: code } : {}),
    truncated: output.includes(TRUNCATION_MARKER),
  };
}

/** What one finished invocation means for the release. Pure, so every status path is testable alone. */
export function outcomeFromInvocation(args: {
  instanceId: string;
  state: string;
  stdout: string;
  stderr: string;
  exitCode?: number;
  requestedVersion: string;
  /** What the agent was asked to do. @default "deploy" */
  action?: AgentParams["action"];
  elapsedMs: number;
}): InstanceOutcome {
  const { instanceId, state, requestedVersion, elapsedMs } = args;
  const result = parseAgentResult(args.stdout);
  const base = {
    instanceId,
    durationMs: typeof result?.duration_ms === "number" ? result.duration_ms : elapsedMs,
    ...(result ? { result } : {}),
    ...(args.exitCode !== undefined ? { exitCode: args.exitCode } : {}),
  };
  const fail = (status: OutcomeStatus, message: string): InstanceOutcome => ({ ...base, ok: false, status, message });

  switch (state) {
    case "Success":
    case "Failed": {
      const exitCode = args.exitCode ?? (state === "Success" ? 0 : 1);
      const status = outcomeFromAgent(exitCode, result);
      if (!result) {
        const hint = lastLine(args.stderr);
        const what =
          status === "rejected"
            ? "the agent rejected its input (exit 2)"
            : status === "locked"
              ? "another deploy holds the instance's lock (exit 3)"
              : `SSM reported ${state} (exit ${exitCode}) but the agent printed no result line`;
        return fail(status, hint ? `${what}: ${hint}` : what);
      }
      const ok = agentSucceeded(result, { version: requestedVersion, ...(args.action ? { action: args.action } : {}) });
      if (!ok && (result.status === "deployed" || result.status === "unchanged")) {
        return fail(status, `agent reports ${result.version}, expected ${requestedVersion}`);
      }
      return { ...base, ok, status, message: describeAgentResult(result) };
    }
    case "TimedOut":
      return fail("timed_out", `timed out on the instance (TimedOut); its state is unknown`);
    case "ExecutionTimedOut":
      // SSM killed the agent's process group (SIGKILL): no trap ran, so it may be switched.
      return fail("timed_out", "timed out while running on the instance (Execution Timed Out); its state is unknown");
    case "DeliveryTimedOut":
      // Never started: the instance still runs what it ran before, like an undeliverable one.
      return fail("undeliverable", "not delivered before the SSM delivery timeout (Delivery Timed Out); nothing ran");
    case "Undeliverable":
      return fail("undeliverable", "SSM could not deliver the command (Undeliverable): is the instance managed and its SSM agent online?");
    case "Terminated":
      return fail("cancelled", "not run: SSM stopped the command after MaxErrors was reached (Terminated)");
    case "Cancelled":
      return fail("cancelled", "the command was cancelled before it finished (Cancelled)");
    case "AccessDenied":
      return fail("error", "SSM refused to run the document on this instance (AccessDenied)");
    case "InvalidPlatform":
      return fail("error", "the deploy document does not support this instance's platform (InvalidPlatform)");
    default:
      return fail("error", `unexpected SSM state ${state}`);
  }
}

/** One readable line for an agent result. */
export function describeAgentResult(r: AgentResult): string {
  const secs = typeof r.duration_ms === "number" ? ` in ${(r.duration_ms / 1000).toFixed(1)}s` : "";
  const reason = agentReason(r);
  switch (r.status) {
    case "deployed":
      return `deployed ${r.version}${r.previous ? ` (was ${r.previous})` : ""}${secs}`;
    case "unchanged":
      return `unchanged: already on ${r.version}`;
    case "rolled_back":
      // The agent's message already names the release it went back to.
      return reason ? `rolled back: ${reason}` : `failed and rolled back to ${r.previous ?? "the previous release"}`;
    case "failed":
      return `failed${reason ? `: ${reason}` : ""}`;
    case "prepared":
      return `prepared for an image: ${reason ?? r.version}`;
    default:
      return `agent status ${String(r.status)}`;
  }
}

function agentReason(r: AgentResult): string | undefined {
  for (const k of ["message", "error", "detail", "reason"]) {
    const v = r[k];
    if (typeof v === "string" && v) return v;
  }
  return undefined;
}

/** A zcp error already reads as a sentence; anything else gets its error name in front. */
function readable(err: unknown): string {
  return err instanceof ZcpError ? err.message : describeError(err);
}

function lastLine(text: string): string {
  const lines = text.trim().split("\n");
  return (lines[lines.length - 1] ?? "").trim().slice(0, 300);
}

/** How many rounds a rate-limited command needs: 10 instances at MaxConcurrency 3 take 4. */
export function expectedWaves(maxConcurrency: string | undefined, count: number): number {
  if (!maxConcurrency) return 1;
  if (maxConcurrency.endsWith("%")) {
    const pct = Number(maxConcurrency.slice(0, -1));
    return pct > 0 ? Math.ceil(100 / Math.min(100, pct)) : 1;
  }
  const n = Number(maxConcurrency);
  return n > 0 ? Math.max(1, Math.ceil(count / n)) : 1;
}

interface TrackedInstance {
  instanceId: string;
  commandId: string;
  running: boolean;
  outcome?: InstanceOutcome;
}

interface TrackedCommand {
  commandId: string;
  /** The ids sent; undefined for tag targets, where SSM resolves the instances. */
  expected?: ReadonlySet<string>;
  finished: boolean;
}

export class SsmTransport implements Transport {
  readonly kind = "ssm" as const;

  constructor(private readonly options: SsmTransportOptions) {}

  /** Runs the agent on exactly these instances, ≤ 50 ids per SendCommand. */
  async runAgent(instanceIds: readonly string[], params: AgentParams, opts: RunOptions): Promise<InstanceOutcome[]> {
    const wanted = chunkInstanceIds(instanceIds).flat();
    if (wanted.length === 0) return [];
    // A bad value fails here, naming its variable, before anything is asked of AWS.
    ssmParameters(params);
    const run = this.newRun(params, opts);
    // One unmanaged or offline id refuses a whole SendCommand (InvalidInstanceId, SendCommand API
    // reference): find them first and report each by id, so the other 49 still deploy.
    const reachable = await run.preflight(wanted);
    const chunks = chunkInstanceIds(reachable);
    const total = reachable.length;
    for (const chunk of chunks) {
      await run.send(chunk, { instanceIds: chunk }, {
        maxConcurrency: shareRateLimit(opts.maxConcurrency, chunk.length, total, "concurrency"),
        maxErrors: shareRateLimit(opts.maxErrors, chunk.length, total, "errors"),
      });
    }
    await run.wait(total);
    return wanted.map((id) => run.outcomeOf(id));
  }

  /**
   * Runs the agent on every instance tagged with the app and environment, in one command
   * whose MaxConcurrency/MaxErrors SSM enforces across the whole fleet.
   */
  async runAgentOnFleet(fleet: { app: string; env: string }, params: AgentParams, opts: RunOptions): Promise<InstanceOutcome[]> {
    const run = this.newRun(params, opts);
    await run.send(undefined, { fleet }, { maxConcurrency: opts.maxConcurrency, maxErrors: opts.maxErrors });
    await run.wait(undefined);
    return run.allOutcomes();
  }

  private newRun(params: AgentParams, opts: RunOptions): DeployRun {
    return new DeployRun(this.options, params, opts);
  }
}

/** One runAgent call: what was sent, what is known, and the polling loop. */
class DeployRun {
  private readonly pacing: Pacing;
  private readonly now: () => number;
  private readonly start: number;
  private readonly commands: TrackedCommand[] = [];
  private readonly instances = new Map<string, TrackedInstance>();
  /** Outcomes decided without an invocation to read (SendCommand itself failed). */
  private readonly unsent = new Map<string, InstanceOutcome>();

  constructor(
    private readonly options: SsmTransportOptions,
    private readonly params: AgentParams,
    private readonly opts: RunOptions,
  ) {
    this.pacing = pacingOptions(options.pacing ?? {});
    this.now = this.pacing.now ?? Date.now;
    this.start = this.now();
  }

  private elapsed(): number {
    return this.now() - this.start;
  }

  private progress(event: Omit<ProgressEvent, "elapsedMs">): void {
    this.opts.onProgress?.({ ...event, elapsedMs: this.elapsed() });
  }

  /**
   * Which ids SSM can reach now (DescribeInstanceInformation, PingStatus Online); the others get
   * an `undeliverable` outcome naming why. If the call itself is refused, every id is tried.
   */
  async preflight(ids: readonly string[]): Promise<string[]> {
    const ping = new Map<string, string>();
    try {
      for (const chunk of chunkInstanceIds(ids)) {
        let token: string | undefined;
        do {
          const page = await awsCall(
            "SSM managed-node check of",
            describeIds(chunk),
            () => this.options.ssm.send(new DescribeInstanceInformationCommand(buildDescribeInstanceInformationInput(chunk, token))),
            this.pacing,
          );
          for (const info of page.InstanceInformationList ?? []) if (info.InstanceId) ping.set(info.InstanceId, info.PingStatus ?? "Unknown");
          token = page.NextToken || undefined;
        } while (token);
      }
    } catch (err) {
      this.pacing.log?.(`SsmDeploy: could not check which instances SSM manages (${readable(err)}); sending to all`);
      return [...ids];
    }
    const reachable: string[] = [];
    for (const id of ids) {
      const status = ping.get(id);
      if (status === "Online") {
        reachable.push(id);
        continue;
      }
      const message =
        status === undefined
          ? "not a managed node: SSM does not know this instance (no SSM agent registered, no instance profile, or terminated); nothing was sent"
          : `SSM agent is not online (PingStatus ${status}); nothing was sent`;
      this.unsent.set(id, { instanceId: id, ok: false, status: "undeliverable", message, durationMs: this.elapsed() });
      this.progress({ instanceId: id, phase: "done", status: "undeliverable" });
    }
    return reachable;
  }

  /**
   * SendCommand, never blindly resent: SendCommand has no idempotency token, so a retry after a
   * lost response (a reset connection, a 5xx after SSM accepted the call) would start a second
   * command. The Comment carries a client token; before any retry that is not a throttle (a
   * throttled call did nothing), the command is looked for by that token first. This loop is
   * SendCommand's one retry layer: its client has the SDK's retries off. The lookup is part of
   * an attempt, so a lookup that fails leaves the next attempt to look again before it sends.
   */
  private async sendOnce(input: SendCommandCommandInput, target: string): Promise<string | undefined> {
    const sentAfter = new Date(this.now() - 5 * 60_000);
    let mayExist = false;
    const out = await awsCall(
      "SSM deploy to",
      target,
      () =>
        retry(
          async () => {
            if (mayExist) {
              const found = await this.options.ssm.send(new ListCommandsCommand(buildFindCommandInput(input.DocumentName ?? "", sentAfter)));
              const mine = (found.Commands ?? []).find((c) => c.Comment === input.Comment);
              if (mine?.CommandId) {
                this.pacing.log?.(`SsmDeploy: found command ${mine.CommandId} sent before its response was lost; not sending again`);
                return { Command: mine };
              }
            }
            try {
              return await this.options.sendCommandClient.send(new SendCommandCommand(input));
            } catch (err) {
              mayExist = isThrottleOrTransient(err) && !/Throttl|TooManyRequests|RequestLimitExceeded/i.test(awsErrorName(err) ?? "");
              throw err;
            }
          },
          isThrottleOrTransient,
          { label: `SSM deploy to ${target}`, ...SEND_COMMAND_RETRY, ...this.pacing },
        ),
      this.pacing,
    );
    return out.Command?.CommandId;
  }

  async send(
    ids: string[] | undefined,
    targets: CommandTargets,
    limits: { maxConcurrency: string | undefined; maxErrors: string | undefined },
  ): Promise<void> {
    const input = buildSendCommandInput({
      documentName: this.options.documentName,
      ...(this.options.documentVersion ? { documentVersion: this.options.documentVersion } : {}),
      params: this.params,
      targets,
      timeoutS: this.opts.timeoutS,
      ...(this.opts.deliveryTimeoutS !== undefined ? { deliveryTimeoutS: this.opts.deliveryTimeoutS } : {}),
      clientToken: randomUUID().slice(0, 13),
      ...(limits.maxConcurrency !== undefined ? { maxConcurrency: limits.maxConcurrency } : {}),
      ...(limits.maxErrors !== undefined ? { maxErrors: limits.maxErrors } : {}),
    });
    const target = ids ? describeIds(ids) : `the ${this.params.app} fleet`;
    try {
      const commandId = await this.sendOnce(input, target);
      if (!commandId) throw new StepError("SSM deploy to", target, new Error("SendCommand returned no CommandId"));
      this.commands.push({ commandId, ...(ids ? { expected: new Set(ids) } : {}), finished: false });
      for (const id of ids ?? []) {
        this.instances.set(id, { instanceId: id, commandId, running: false });
        this.progress({ instanceId: id, phase: "sent" });
      }
    } catch (err) {
      // The other chunks may already be running: report this one's instances as failed
      // rather than abandoning the whole run with commands in flight.
      for (const id of ids ?? []) {
        const outcome: InstanceOutcome = { instanceId: id, ok: false, status: "error", message: readable(err), durationMs: this.elapsed() };
        this.unsent.set(id, outcome);
        this.progress({ instanceId: id, phase: "done", status: "error" });
      }
      if (!ids) throw err;
    }
  }

  /** Polls until every command finished or the deadline passed. */
  async wait(count: number | undefined): Promise<void> {
    if (this.commands.length === 0) return;
    const maxDelayMs = this.options.pollMaxDelayMs ?? 15_000;
    const waves = expectedWaves(this.opts.maxConcurrency, count ?? 1);
    // Each wave may wait out the delivery timeout and then run up to the execution timeout.
    const deliveryS = clampTimeoutSeconds(this.opts.deliveryTimeoutS ?? this.opts.timeoutS);
    const deadlineMs = waves * (deliveryS + clampTimeoutSeconds(this.opts.timeoutS)) * 1000 + (this.options.deadlineGraceMs ?? 120_000);
    try {
      await poll<true>(
        async () => {
          for (const cmd of this.commands) if (!cmd.finished) await this.refresh(cmd);
          if (this.commands.every((c) => c.finished)) return { done: true, value: true };
          return { done: false, status: this.summary() };
        },
        {
          label: "SsmDeploy",
          deadlineMs,
          // Enough attempts that the deadline, not the count, ends the wait.
          maxAttempts: Math.ceil(deadlineMs / Math.max(1, maxDelayMs / 10)) + 1,
          initialDelayMs: this.options.pollInitialDelayMs ?? 2_000,
          maxDelayMs,
          ...this.pacing,
        },
      );
    } catch (err) {
      if (!(err instanceof DeadlineExceededError)) throw err;
      await this.giveUp(Math.round(deadlineMs / 1000));
    }
  }

  private summary(): string {
    const all = [...this.instances.values()];
    const done = all.filter((i) => i.outcome).length;
    const running = all.filter((i) => !i.outcome && i.running).length;
    return `${done}/${all.length} finished, ${running} running`;
  }

  /** One status round for one command: its invocation pages (and, for tag targets, the command). */
  private async refresh(cmd: TrackedCommand): Promise<void> {
    let invocations: CommandInvocation[];
    let commandState: { status?: string; targetCount?: number } | undefined;
    try {
      invocations = await this.listInvocations(cmd.commandId);
      if (!cmd.expected) commandState = await this.describeCommand(cmd.commandId);
    } catch (err) {
      if (NOT_VISIBLE_YET.has(awsErrorName(err) ?? "")) return;
      if (isThrottledOrTransient(err)) {
        // Throttling the SDK's retries did not absorb: no news this round. The polling loop is
        // the retry layer for waiting; it asks again at its own cadence, within its deadline.
        this.pacing.log?.(`SsmDeploy: status of command ${cmd.commandId} not read this round (${awsErrorName(err) ?? "error"}); polling again`);
        return;
      }
      this.failCommand(cmd, readable(err));
      // Its state can no longer be watched: stop it, so it cannot switch instances later.
      await this.cancelQuietly(cmd.commandId, cmd.expected ? [...cmd.expected] : undefined);
      return;
    }
    for (const inv of invocations) {
      const id = inv.InstanceId;
      if (!id || (cmd.expected && !cmd.expected.has(id))) continue;
      let tracked = this.instances.get(id);
      if (!tracked) {
        tracked = { instanceId: id, commandId: cmd.commandId, running: false };
        this.instances.set(id, tracked);
        this.progress({ instanceId: id, phase: "sent" });
      }
      if (tracked.outcome) continue;
      const state = invocationState(inv);
      if (!isFinalInvocationState(state)) {
        if (state === "InProgress" && !tracked.running) {
          tracked.running = true;
          this.progress({ instanceId: id, phase: "running" });
        }
        continue;
      }
      const outcome = await this.finish(cmd.commandId, id, state, inv);
      if (!outcome) continue; // its output could not be read this round; the next poll reads it
      tracked.outcome = outcome;
      this.progress({ instanceId: id, phase: "done", status: tracked.outcome.status });
    }
    const mine = [...this.instances.values()].filter((i) => i.commandId === cmd.commandId);
    if (cmd.expected) {
      cmd.finished = [...cmd.expected].every((id) => this.instances.get(id)?.outcome);
    } else if (commandState?.status && FINAL_COMMAND_STATES.has(commandState.status)) {
      cmd.finished = mine.every((i) => i.outcome) && mine.length >= (commandState.targetCount ?? 0);
    }
  }

  private async listInvocations(commandId: string): Promise<CommandInvocation[]> {
    const all: CommandInvocation[] = [];
    let token: string | undefined;
    do {
      const page = await awsCall(
        "SSM deploy status of command",
        commandId,
        () => this.options.ssm.send(new ListCommandInvocationsCommand(buildListCommandInvocationsInput(commandId, token))),
        this.pacing,
      );
      all.push(...(page.CommandInvocations ?? []));
      token = page.NextToken || undefined;
    } while (token);
    return all;
  }

  private async describeCommand(commandId: string): Promise<{ status?: string; targetCount?: number }> {
    const out = await awsCall(
      "SSM deploy status of command",
      commandId,
      () => this.options.ssm.send(new ListCommandsCommand(buildListCommandsInput(commandId))),
      this.pacing,
    );
    const c = out.Commands?.[0];
    return { ...(c?.Status ? { status: c.Status } : {}), ...(c?.TargetCount !== undefined ? { targetCount: c.TargetCount } : {}) };
  }

  /** Builds the outcome of a finished invocation, reading full output only when the list entry lacks the result. */
  private async finish(commandId: string, instanceId: string, state: string, inv: CommandInvocation): Promise<InstanceOutcome | undefined> {
    const listed = pluginOutput(inv);
    let { stdout, stderr } = listed;
    let exitCode = listed.exitCode;
    let readError: string | undefined;
    const needsFullOutput = (state === "Success" || state === "Failed") && (listed.truncated || !parseAgentResult(stdout));
    if (needsFullOutput) {
      try {
        const full = await awsCall(
          "SSM deploy output of",
          instanceId,
          () => this.options.ssm.send(new GetCommandInvocationCommand(buildGetCommandInvocationInput(commandId, instanceId))),
          this.pacing,
        );
        stdout = full.StandardOutputContent ?? stdout;
        stderr = full.StandardErrorContent ?? stderr;
        if (full.ResponseCode !== undefined && full.ResponseCode >= 0) exitCode = full.ResponseCode;
      } catch (err) {
        if (isThrottledOrTransient(err)) {
          this.pacing.log?.(`SsmDeploy: output of ${instanceId} not read this round (${awsErrorName(err) ?? "error"}); polling again`);
          return undefined;
        }
        if (awsErrorName(err) !== "InvocationDoesNotExist") readError = readable(err);
      }
    }
    const outcome = outcomeFromInvocation({
      instanceId,
      state,
      stdout,
      stderr,
      ...(exitCode !== undefined ? { exitCode } : {}),
      requestedVersion: this.params.version,
      ...(this.params.action ? { action: this.params.action } : {}),
      elapsedMs: this.elapsed(),
    });
    return readError && !outcome.result ? { ...outcome, message: `${outcome.message} (${readError})` } : outcome;
  }

  /** A status call failed for good: every unfinished instance of the command is reported with the reason. */
  private failCommand(cmd: TrackedCommand, message: string): void {
    for (const id of cmd.expected ?? []) {
      const tracked = this.instances.get(id);
      if (tracked && !tracked.outcome) {
        tracked.outcome = { instanceId: id, ok: false, status: "error", message, durationMs: this.elapsed() };
        this.progress({ instanceId: id, phase: "done", status: "error" });
      }
    }
    for (const tracked of this.instances.values()) {
      if (tracked.commandId === cmd.commandId && !tracked.outcome) {
        tracked.outcome = { instanceId: tracked.instanceId, ok: false, status: "error", message, durationMs: this.elapsed() };
        this.progress({ instanceId: tracked.instanceId, phase: "done", status: "error" });
      }
    }
    cmd.finished = true;
  }

  private async cancelQuietly(commandId: string, ids: string[] | undefined): Promise<void> {
    try {
      await this.options.ssm.send(new CancelCommandCommand(buildCancelCommandInput(commandId, ids)));
    } catch (err) {
      this.pacing.log?.(`SsmDeploy: could not cancel command ${commandId}: ${readable(err)}`);
    }
  }

  /** The deadline passed: cancel what is still running so it cannot switch instances later. */
  private async giveUp(deadlineS: number): Promise<void> {
    for (const cmd of this.commands) {
      if (cmd.finished) continue;
      const open = [...this.instances.values()].filter((i) => i.commandId === cmd.commandId && !i.outcome).map((i) => i.instanceId);
      const missing = [...(cmd.expected ?? [])].filter((id) => !this.instances.get(id)?.outcome && !open.includes(id));
      try {
        await awsCall(
          "SSM cancel of command",
          cmd.commandId,
          () => this.options.ssm.send(new CancelCommandCommand(buildCancelCommandInput(cmd.commandId, cmd.expected ? [...open, ...missing] : undefined))),
          this.pacing,
        );
      } catch (err) {
        this.pacing.log?.(`SsmDeploy: could not cancel command ${cmd.commandId}: ${readable(err)}`);
      }
      for (const id of [...open, ...missing]) {
        const tracked = this.instances.get(id) ?? { instanceId: id, commandId: cmd.commandId, running: false };
        tracked.outcome = {
          instanceId: id,
          ok: false,
          status: "timed_out",
          message: `no final status from SSM within ${deadlineS}s (command ${cmd.commandId} cancelled); its state is unknown`,
          durationMs: this.elapsed(),
        };
        this.instances.set(id, tracked);
        this.progress({ instanceId: id, phase: "done", status: "timed_out" });
      }
      cmd.finished = true;
    }
  }

  outcomeOf(instanceId: string): InstanceOutcome {
    const outcome = this.unsent.get(instanceId) ?? this.instances.get(instanceId)?.outcome;
    if (outcome) return outcome;
    // Unreachable once wait() returned; kept so a caller never receives a hole.
    return { instanceId, ok: false, status: "error", message: "no status was recorded", durationMs: this.elapsed() };
  }

  allOutcomes(): InstanceOutcome[] {
    return [...this.instances.keys()].sort().map((id) => this.outcomeOf(id));
  }
}

export function createSsmTransport(options: SsmTransportOptions): SsmTransport {
  return new SsmTransport(options);
}
