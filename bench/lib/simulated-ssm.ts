/**
 * SSM Run Command in simulated time, behind `aws-sdk-client-mock`, for benchmarks that count
 * API calls. Unlike the scripted SSM of the unit tests (tests/fixtures/aws/fake-ssm.ts), which
 * moves an instance one step per poll, this one moves by the clock: each instance of a command
 * starts 1 s after SendCommand and finishes a seeded random 5–60 s after it, however often it
 * is polled. ListCommandInvocations pages like SSM does (at most 50 entries, then NextToken).
 * Every call is recorded with the labels the benchmark sets (batch, poll round).
 */
import {
  CancelCommandCommand,
  GetCommandInvocationCommand,
  ListCommandInvocationsCommand,
  ListCommandsCommand,
  SendCommandCommand,
  type CommandInvocation,
  type GetCommandInvocationCommandInput,
  type ListCommandInvocationsCommandInput,
  type ListCommandsCommandInput,
  type SendCommandCommandInput,
  type SSMClient,
} from "@aws-sdk/client-ssm";
import { mockClient } from "aws-sdk-client-mock";

/** SSM's largest ListCommandInvocations page. */
const PAGE_LIMIT = 50;
const START_DELAY_MS = 1_000;

export type SsmCallName = "SendCommand" | "ListCommandInvocations" | "GetCommandInvocation" | "ListCommands" | "CancelCommand";

export interface SsmCall {
  name: SsmCallName;
  commandId?: string;
  /** The labels current when the call was made (see `label`). */
  labels: Readonly<Record<string, number>>;
}

export interface SimulatedSsmOptions {
  /** The clock the code under test sleeps on. */
  now: () => number;
  /** Uniform in [0, 1), seeded by the caller. */
  random: () => number;
  /** Shortest and longest run of one instance (ms). @default 5000, 60000 */
  minRunMs?: number;
  maxRunMs?: number;
}

interface SimCommand {
  ids: string[];
  sentAt: number;
  finishAt: Map<string, number>;
  version: string;
}

/** Pseudo-random numbers in [0, 1) from a 32-bit seed (xorshift32): the same seed, the same run. */
export function seededRandom(seed: number): () => number {
  let x = seed >>> 0 || 0x9e3779b9;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 0x1_0000_0000;
  };
}

export function simulatedSsm(client: SSMClient, opts: SimulatedSsmOptions) {
  const mock = mockClient(client);
  const minRun = opts.minRunMs ?? 5_000;
  const maxRun = opts.maxRunMs ?? 60_000;
  const commands = new Map<string, SimCommand>();
  const calls: SsmCall[] = [];
  const labels: Record<string, number> = {};
  let next = 1;

  const record = (name: SsmCallName, commandId?: string) => calls.push({ name, ...(commandId ? { commandId } : {}), labels: { ...labels } });

  const stateOf = (cmd: SimCommand, id: string): "Pending" | "InProgress" | "Success" => {
    const t = opts.now();
    if (t >= (cmd.finishAt.get(id) ?? Infinity)) return "Success";
    return t >= cmd.sentAt + START_DELAY_MS ? "InProgress" : "Pending";
  };
  const agentOutput = (cmd: SimCommand, id: string) => {
    const ms = (cmd.finishAt.get(id) ?? cmd.sentAt) - cmd.sentAt;
    const result = { status: "deployed", version: cmd.version, previous: "v1", duration_ms: ms };
    return `zcp-agent: fetched and verified\nzcp-agent: switched, healthy\n${JSON.stringify(result)}\n`;
  };
  const invocation = (commandId: string, cmd: SimCommand, id: string): CommandInvocation => {
    const state = stateOf(cmd, id);
    const done = state === "Success";
    return {
      CommandId: commandId,
      InstanceId: id,
      Status: state,
      StatusDetails: state,
      CommandPlugins: [{ Name: "deploy", Status: state, ResponseCode: done ? 0 : -1, ...(done ? { Output: agentOutput(cmd, id) } : {}) }],
    };
  };

  mock.on(SendCommandCommand).callsFake((input: SendCommandCommandInput) => {
    const commandId = `cmd-${next++}`;
    record("SendCommand", commandId);
    const ids = [...(input.InstanceIds ?? [])];
    const sentAt = opts.now();
    const finishAt = new Map(ids.map((id) => [id, sentAt + minRun + Math.floor(opts.random() * (maxRun - minRun + 1))]));
    commands.set(commandId, { ids, sentAt, finishAt, version: input.Parameters?.version?.[0] ?? "" });
    return { Command: { CommandId: commandId, DocumentName: input.DocumentName, InstanceIds: ids } };
  });
  mock.on(ListCommandInvocationsCommand).callsFake((input: ListCommandInvocationsCommandInput) => {
    const commandId = input.CommandId ?? "";
    record("ListCommandInvocations", commandId);
    const cmd = commands.get(commandId);
    if (!cmd) return { CommandInvocations: [] };
    const size = Math.min(PAGE_LIMIT, input.MaxResults ?? PAGE_LIMIT);
    const from = Number(input.NextToken ?? "0");
    const page = cmd.ids.slice(from, from + size).map((id) => invocation(commandId, cmd, id));
    return { CommandInvocations: page, ...(from + size < cmd.ids.length ? { NextToken: String(from + size) } : {}) };
  });
  mock.on(GetCommandInvocationCommand).callsFake((input: GetCommandInvocationCommandInput) => {
    record("GetCommandInvocation", input.CommandId);
    const cmd = commands.get(input.CommandId ?? "");
    const id = input.InstanceId ?? "";
    const state = cmd ? stateOf(cmd, id) : "Pending";
    return {
      CommandId: input.CommandId,
      InstanceId: id,
      Status: state,
      ResponseCode: state === "Success" ? 0 : -1,
      StandardOutputContent: cmd && state === "Success" ? agentOutput(cmd, id) : "",
      StandardErrorContent: "",
    };
  });
  mock.on(ListCommandsCommand).callsFake((input: ListCommandsCommandInput) => {
    record("ListCommands", input.CommandId);
    const cmd = commands.get(input.CommandId ?? "");
    if (!cmd) return { Commands: [] };
    const done = cmd.ids.every((id) => stateOf(cmd, id) === "Success");
    return { Commands: [{ CommandId: input.CommandId, Status: done ? "Success" : "InProgress", TargetCount: cmd.ids.length }] };
  });
  mock.on(CancelCommandCommand).callsFake((input: { CommandId?: string }) => {
    record("CancelCommand", input.CommandId);
    return {};
  });

  return {
    mock,
    calls,
    /** Sets a label that every later call carries (`label("batch", 2)`). */
    label(name: string, value: number): void {
      labels[name] = value;
    },
    restore(): void {
      mock.restore();
    },
  };
}
