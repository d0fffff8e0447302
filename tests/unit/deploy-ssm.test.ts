/**
 * The ssm transport against a scripted SSM: what SendCommand carries, every invocation state,
 * and the number of status calls a poll costs.
 */
import { expect } from "chai";
import {
  CancelCommandCommand,
  GetCommandInvocationCommand,
  ListCommandInvocationsCommand,
  ListCommandsCommand,
  SendCommandCommand,
} from "@aws-sdk/client-ssm";
import {
  buildSendCommandInput,
  chunkInstanceIds,
  shareRateLimit,
  ssmParameters,
  clampTimeoutSeconds,
} from "../../deploy/commands/ssm.js";
import { SsmTransport, outcomeFromInvocation, pluginOutput } from "../../deploy/transports/ssm.js";
import type { ProgressEvent, RunOptions } from "../../deploy/transport.js";
import { DEPLOY_PARAMETERS } from "../../shared/agent/document.js";
import { ConfigError } from "../../shared/errors.js";
import { awsError, fakeClock, offlineSsm, type FakeClock } from "../fixtures/aws/clients.js";
import { PARAMS, agentLine, fakeSsm, ok, type Step } from "../fixtures/aws/fake-ssm.js";

const DOCUMENT = "zcp-shop-dev-deploy";

function ids(n: number, from = 0): string[] {
  return Array.from({ length: n }, (_, i) => `i-${(from + i).toString(16).padStart(17, "0")}`);
}

function setup(scripts: Record<string, Step[]>, clock: FakeClock = fakeClock()) {
  const client = offlineSsm();
  const fake = fakeSsm(client, scripts);
  const transport = new SsmTransport({
    ssm: client,
    documentName: DOCUMENT,
    pacing: { sleep: clock.sleep, now: clock.now, random: clock.random, log: clock.log },
  });
  return { ...fake, transport, clock };
}

function run(opts: Partial<RunOptions> = {}): RunOptions {
  return { timeoutS: 600, ...opts };
}

describe("deploy/commands/ssm (what SendCommand carries)", function () {
  it("sends the deploy document with every agent parameter, rate limits, timeout and no CloudWatch output", function () {
    const input = buildSendCommandInput({
      documentName: DOCUMENT,
      params: PARAMS,
      targets: { instanceIds: ["i-0abc", "i-0def"] },
      timeoutS: 900,
      maxConcurrency: "1",
      maxErrors: "0",
    });
    expect(input).to.deep.equal({
      DocumentName: DOCUMENT,
      InstanceIds: ["i-0abc", "i-0def"],
      Parameters: {
        app: ["shop"],
        version: ["v2"],
        artifact: ["s3://zcp-artifacts/releases/shop/v2.tar.gz"],
        sha256: ["a".repeat(64)],
        appDir: ["/srv/shop"],
        appUser: ["shop"],
        service: ["shop"],
        processManager: ["supervisor"],
        healthUrl: ["http://127.0.0.1:8080/health"],
        healthTimeoutS: ["30"],
        keepReleases: ["5"],
      },
      TimeoutSeconds: 900,
      Comment: "zcp deploy shop v2",
      CloudWatchOutputConfig: { CloudWatchOutputEnabled: false },
      MaxConcurrency: "1",
      MaxErrors: "0",
    });
  });

  it("targets the fleet by its app and env tags when asked to, at 100% concurrency by default", function () {
    const input = buildSendCommandInput({ documentName: DOCUMENT, params: PARAMS, targets: { fleet: { app: "shop", env: "dev" } }, timeoutS: 60 });
    expect(input.Targets).to.deep.equal([
      { Key: "tag:zcp:app", Values: ["shop"] },
      { Key: "tag:zcp:env", Values: ["dev"] },
    ]);
    expect(input.InstanceIds).to.equal(undefined);
    expect(input.MaxConcurrency).to.equal("100%");
    expect(input.MaxErrors).to.equal("0");
  });

  it("refuses more than 50 ids in one command and clamps the timeout to what SSM accepts", function () {
    expect(() => buildSendCommandInput({ documentName: DOCUMENT, params: PARAMS, targets: { instanceIds: ids(51) }, timeoutS: 60 })).to.throw(RangeError, /1\.\.50/);
    expect(clampTimeoutSeconds(5)).to.equal(30);
    expect(clampTimeoutSeconds(10_000_000)).to.equal(2_592_000);
  });

  it("chunks ids in order without duplicates and shares count limits across chunks", function () {
    const chunks = chunkInstanceIds([...ids(120), ...ids(3)]);
    expect(chunks.map((c) => c.length)).to.deep.equal([50, 50, 20]);
    expect(chunks[0]?.[0]).to.equal(ids(1)[0]);
    expect(shareRateLimit("10", 50, 120, "concurrency")).to.equal("4");
    expect(shareRateLimit("10", 20, 120, "concurrency")).to.equal("1");
    expect(shareRateLimit("2", 20, 120, "errors")).to.equal("0");
    expect(shareRateLimit("25%", 50, 120, "concurrency")).to.equal("25%");
    expect(shareRateLimit("10", 20, 20, "concurrency")).to.equal("10");
  });

  it("names parameters as the deploy document declares them, and refuses a value SSM would reject", function () {
    expect(Object.keys(ssmParameters(PARAMS))).to.deep.equal(DEPLOY_PARAMETERS.map((p) => p.name));
    expect(() => ssmParameters({ ...PARAMS, healthUrl: "http://x/$(reboot)" })).to.throw(ConfigError, /^ZCP_HEALTH_URL: must match /);
  });

  it("sends nothing when a parameter is invalid", async function () {
    const { transport, mock } = setup({});
    const err = await transport.runAgent(ids(2), { ...PARAMS, version: "not a version" }, run()).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).to.be.instanceOf(ConfigError);
    expect(mock.calls()).to.have.length(0);
  });
});

describe("deploy/transports/ssm (SendCommand, polling, outcomes)", function () {
  it("reports a successful deploy as ok, with the agent's result and progress events", async function () {
    const [id] = ids(1) as [string];
    const events: ProgressEvent[] = [];
    const { transport, mock } = setup({ [id]: ["Pending", "InProgress", ok()] });
    const [outcome] = await transport.runAgent([id], PARAMS, run({ onProgress: (e) => events.push(e) }));
    expect(outcome).to.include({ instanceId: id, ok: true, status: "deployed", exitCode: 0, durationMs: 4200 });
    expect(outcome?.message).to.equal("deployed v2 (was v1) in 4.2s");
    expect(outcome?.result?.previous).to.equal("v1");
    expect(events.map((e) => e.phase)).to.deep.equal(["sent", "running", "done"]);
    expect(events[2]?.status).to.equal("deployed");
    const [list] = mock.commandCalls(ListCommandInvocationsCommand);
    expect(list?.args[0].input).to.deep.equal({ CommandId: "cmd-1", Details: true, MaxResults: 50 });
    expect(mock.commandCalls(GetCommandInvocationCommand)).to.have.length(0);
  });

  it("reports a failed invocation with the agent's rolled_back result and exit code", async function () {
    const [id] = ids(1) as [string];
    const line = agentLine("rolled_back", "v2", "v1", { reason: "health", message: "health check failed after 30s; rolled back to v1" });
    const { transport } = setup({
      [id]: ["InProgress", { status: "Failed", output: `zcp-agent: health check failed\n${line}\n\n----------ERROR-------\nzcp-agent: last lines\n`, responseCode: 1 }],
    });
    const [outcome] = await transport.runAgent([id], PARAMS, run());
    expect(outcome).to.include({ ok: false, status: "rolled_back", exitCode: 1 });
    expect(outcome?.result?.status).to.equal("rolled_back");
    expect(outcome?.message).to.equal("rolled back: health check failed after 30s; rolled back to v1");
  });

  it("maps TimedOut, ExecutionTimedOut, Cancelled, Terminated, Undeliverable and DeliveryTimedOut", async function () {
    const [a, b, c, d, e, f] = ids(6) as [string, string, string, string, string, string];
    const { transport, mock } = setup({
      [a]: ["InProgress", "TimedOut"],
      [b]: ["InProgress", { status: "TimedOut", details: "ExecutionTimedOut" }],
      [c]: ["InProgress", "Cancelling", "Cancelled"],
      [d]: [{ status: "Failed", details: "Terminated" }],
      [e]: [{ status: "Failed", details: "Undeliverable" }],
      [f]: ["Pending", { status: "TimedOut", details: "DeliveryTimedOut" }],
    });
    const outcomes = await transport.runAgent([a, b, c, d, e, f], PARAMS, run());
    expect(outcomes.map((o) => [o.instanceId, o.status, o.ok])).to.deep.equal([
      [a, "timed_out", false],
      [b, "timed_out", false],
      [c, "cancelled", false],
      [d, "cancelled", false],
      [e, "undeliverable", false],
      [f, "undeliverable", false],
    ]);
    expect(outcomes[1]?.message).to.match(/ExecutionTimedOut/);
    expect(outcomes[3]?.message).to.match(/MaxErrors/);
    expect(outcomes[4]?.message).to.match(/could not deliver/);
    expect(outcomes[5]?.message).to.match(/nothing ran/);
    // Nothing ran on those instances, so there is no output to fetch.
    expect(mock.commandCalls(GetCommandInvocationCommand)).to.have.length(0);
  });

  it("keeps polling through Delayed until Success", async function () {
    const [id] = ids(1) as [string];
    const { transport, mock } = setup({ [id]: ["Pending", "Delayed", "Delayed", "InProgress", ok()] });
    const [outcome] = await transport.runAgent([id], PARAMS, run());
    expect(outcome?.ok).to.equal(true);
    expect(mock.commandCalls(ListCommandInvocationsCommand)).to.have.length(5);
  });

  it("tolerates InvocationDoesNotExist and an empty list right after sending", async function () {
    const [id] = ids(1) as [string];
    const { transport, mock } = setup({ [id]: ["InProgress", ok()] });
    mock
      .on(ListCommandInvocationsCommand)
      .rejectsOnce(awsError("InvocationDoesNotExist"))
      .resolvesOnce({ CommandInvocations: [] })
      .resolvesOnce({ CommandInvocations: [] })
      .resolves({
        CommandInvocations: [
          { CommandId: "cmd-1", InstanceId: id, Status: "Success", CommandPlugins: [{ ResponseCode: 0, Output: `${agentLine("deployed", "v2", "v1")}\n` }] },
        ],
      });
    const [outcome] = await transport.runAgent([id], PARAMS, run());
    expect(outcome).to.include({ ok: true, status: "deployed" });
    expect(mock.commandCalls(ListCommandInvocationsCommand)).to.have.length(4);
  });

  it("absorbs throttled status calls by polling again, at the polling cadence (mocked SSM)", async function () {
    const [id] = ids(1) as [string];
    const { transport, mock, clock } = setup({ [id]: ["InProgress", ok()] });
    const list = mock.on(ListCommandInvocationsCommand);
    for (let i = 0; i < 4; i++) list.rejectsOnce(awsError("ThrottlingException", 400, "Rate exceeded"));
    list.resolves({
      CommandInvocations: [{ CommandId: "cmd-1", InstanceId: id, Status: "Success", CommandPlugins: [{ ResponseCode: 0, Output: agentLine("deployed", "v2", "v1") }] }],
    });
    const [outcome] = await transport.runAgent([id], PARAMS, run());
    expect(outcome).to.include({ ok: true, status: "deployed" });
    expect(mock.commandCalls(ListCommandInvocationsCommand)).to.have.length(5);
    // Each refused status call cost one polling round, not a burst of immediate retries.
    expect(clock.lines.filter((l) => l.startsWith("SsmDeploy: attempt"))).to.have.length(4);
  });

  it("does not resend a SendCommand the SDK's retries could not get through (mocked SSM)", async function () {
    const [id] = ids(1) as [string];
    const { transport, mock } = setup({ [id]: [ok()] });
    mock.on(SendCommandCommand).rejects(awsError("ThrottlingException", 400, "Rate exceeded"));
    const [outcome] = await transport.runAgent([id], PARAMS, run());
    expect(outcome).to.include({ ok: false, status: "error" });
    expect(outcome?.message).to.match(/SSM deploy to i-\w+ failed: ThrottlingException: Rate exceeded/);
    expect(mock.commandCalls(SendCommandCommand), "zcp adds no retry of its own around the SDK's").to.have.length(1);
  });

  it("sends 120 ids as three SendCommand calls of at most 50, sharing a count MaxConcurrency", async function () {
    const all = ids(120);
    const { transport, mock } = setup(Object.fromEntries(all.map((id) => [id, ["InProgress", ok()]])));
    const outcomes = await transport.runAgent(all, PARAMS, run({ maxConcurrency: "10", maxErrors: "0" }));
    const sends = mock.commandCalls(SendCommandCommand).map((c) => c.args[0].input);
    expect(sends.map((s) => s.InstanceIds?.length)).to.deep.equal([50, 50, 20]);
    expect(sends.map((s) => s.MaxConcurrency)).to.deep.equal(["4", "4", "1"]);
    expect(sends.every((s) => s.DocumentName === DOCUMENT && s.MaxErrors === "0")).to.equal(true);
    expect(outcomes.map((o) => o.instanceId)).to.deep.equal(all);
    expect(outcomes.every((o) => o.ok)).to.equal(true);
  });

  it("costs the same status calls per poll for 1 instance as for 50", async function () {
    const script: Step[] = ["Pending", "InProgress", "InProgress", ok()];
    const one = setup({ [ids(1)[0] as string]: script });
    await one.transport.runAgent(ids(1), PARAMS, run());
    const fifty = setup(Object.fromEntries(ids(50).map((id) => [id, script])));
    await fifty.transport.runAgent(ids(50), PARAMS, run());
    const calls = (m: typeof one.mock) => ({
      list: m.commandCalls(ListCommandInvocationsCommand).length,
      get: m.commandCalls(GetCommandInvocationCommand).length,
    });
    expect(calls(one.mock)).to.deep.equal({ list: 4, get: 0 });
    expect(calls(fifty.mock)).to.deep.equal({ list: 4, get: 0 });
  });

  it("reads full output with GetCommandInvocation only for an instance whose list entry lacks the result", async function () {
    const [a, b] = ids(2) as [string, string];
    const { transport, mock } = setup({
      [a]: [ok()],
      [b]: [{ status: "Success", responseCode: 0, output: "zcp-agent: a long log …\n---Output truncated---", fullStdout: `log\n${agentLine("deployed", "v2", "v1")}\n` }],
    });
    const outcomes = await transport.runAgent([a, b], PARAMS, run());
    expect(outcomes.every((o) => o.ok)).to.equal(true);
    const gets = mock.commandCalls(GetCommandInvocationCommand);
    expect(gets.map((g) => g.args[0].input)).to.deep.equal([{ CommandId: "cmd-1", InstanceId: b }]);
  });

  it("is not ok when the agent reports another version, or prints no result at all", async function () {
    const [a, b] = ids(2) as [string, string];
    const { transport } = setup({
      [a]: [{ status: "Success", responseCode: 0, output: agentLine("unchanged", "v1", "v1") }],
      [b]: [{ status: "Failed", responseCode: 2, output: "", fullStdout: "" }],
    });
    const [x, y] = await transport.runAgent([a, b], PARAMS, run());
    expect(x).to.include({ ok: false, status: "unchanged" });
    expect(x?.message).to.equal("agent reports v1, expected v2");
    expect(y).to.include({ ok: false, status: "rejected", exitCode: 2 });
  });

  it("stops waiting at the deadline, cancels the command and reports the instance as timed out", async function () {
    const [id] = ids(1) as [string];
    const { transport, mock, clock } = setup({ [id]: ["InProgress"] });
    const [outcome] = await transport.runAgent([id], PARAMS, run({ timeoutS: 60 }));
    expect(outcome).to.include({ ok: false, status: "timed_out" });
    expect(outcome?.message).to.match(/no final status from SSM within \d+s/);
    expect(mock.commandCalls(CancelCommandCommand).map((c) => c.args[0].input)).to.deep.equal([{ CommandId: "cmd-1", InstanceIds: [id] }]);
    // (1 wave + 1) × 60 s + 120 s of grace, on the fake clock.
    expect(clock.now() - 1_700_000_000_000).to.be.at.most(240_000);
    expect(clock.lines.some((l) => /^SsmDeploy: attempt \d+\/\d+ 0\/1 finished, 1 running/.test(l))).to.equal(true);
  });

  it("turns a refused SendCommand into per-instance errors naming the step and target", async function () {
    const [a, b] = ids(2) as [string, string];
    const { transport, mock } = setup({});
    mock.on(SendCommandCommand).rejects(awsError("AccessDeniedException", 400, "not authorized to perform ssm:SendCommand"));
    const outcomes = await transport.runAgent([a, b], PARAMS, run());
    expect(outcomes.map((o) => o.status)).to.deep.equal(["error", "error"]);
    expect(outcomes[0]?.message).to.equal(`SSM deploy to ${a}, ${b} failed: AccessDeniedException: not authorized to perform ssm:SendCommand`);
    expect(mock.commandCalls(ListCommandInvocationsCommand)).to.have.length(0);
  });

  it("runs on the tagged fleet with one command and learns the instances from SSM", async function () {
    const [a, b] = ids(2) as [string, string];
    const { transport, mock } = setup({ [b]: ["InProgress", ok()], [a]: ["InProgress", ok()] });
    const outcomes = await transport.runAgentOnFleet({ app: "shop", env: "dev" }, PARAMS, run({ maxConcurrency: "50%", maxErrors: "1" }));
    const [send] = mock.commandCalls(SendCommandCommand);
    expect(send?.args[0].input.Targets).to.deep.equal([
      { Key: "tag:zcp:app", Values: ["shop"] },
      { Key: "tag:zcp:env", Values: ["dev"] },
    ]);
    expect(send?.args[0].input).to.include({ MaxConcurrency: "50%", MaxErrors: "1" });
    expect(outcomes.map((o) => [o.instanceId, o.ok])).to.deep.equal([
      [a, true],
      [b, true],
    ]);
    expect(mock.commandCalls(ListCommandsCommand).length).to.equal(mock.commandCalls(ListCommandInvocationsCommand).length);
  });

  it("returns nothing and sends nothing for an empty id list", async function () {
    const { transport, mock } = setup({});
    expect(await transport.runAgent([], PARAMS, run())).to.deep.equal([]);
    expect(mock.calls()).to.have.length(0);
  });
});

describe("deploy/transports/ssm pure interpretation", function () {
  it("splits a list entry's output into stdout and stderr", function () {
    const out = pluginOutput({ CommandPlugins: [{ Output: "a\nb\n----------ERROR-------\noops", ResponseCode: 1 }] });
    expect(out).to.deep.equal({ stdout: "a\nb", stderr: "\noops", exitCode: 1, truncated: false });
  });

  it("names a locked instance from the exit code when the agent printed no result", function () {
    const o = outcomeFromInvocation({ instanceId: "i-1", state: "Failed", stdout: "", stderr: "lock held by pid 42", exitCode: 3, requestedVersion: "v2", elapsedMs: 5 });
    expect(o).to.include({ status: "locked", ok: false, durationMs: 5 });
    expect(o.message).to.equal("another deploy holds the instance's lock (exit 3): lock held by pid 42");
  });
});
