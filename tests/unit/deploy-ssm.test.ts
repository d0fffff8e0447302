/**
 * The ssm transport against a scripted SSM: what SendCommand carries, every invocation state,
 * and the number of status calls a poll costs.
 */
import { expect } from "chai";
import {
  CancelCommandCommand,
  GetCommandInvocationCommand,
  ListCommandInvocationsCommand,
  SendCommandCommand,
} from "@aws-sdk/client-ssm";
import {
  buildSendCommandInput,
  chunkInstanceIds,
  shareRateLimit,
  ssmParameters,
  clampTimeoutSeconds,
} from "../../deploy/commands/ssm.js";
import { SsmTransport, invocationState, outcomeFromInvocation, pluginOutput } from "../../deploy/transports/ssm.js";
import type { ProgressEvent, RunOptions } from "../../deploy/transport.js";
import { DEPLOY_PARAMETERS } from "../../shared/agent/document.js";
import { ConfigError } from "../../shared/errors.js";
import { awsError, fakeClock, offlineSsm, type FakeClock } from "../fixtures/aws/clients.js";
import { PARAMS } from "../fixtures/aws/params.js";
import { STATUS_DETAILS, simulateSsm, type AgentPlan, type AgentRunContext, type SimInstance, type SsmSimulatorOptions } from "../fixtures/aws/ssm-simulator.js";

const DOCUMENT = "zcp-shop-dev-deploy";

function ids(n: number, from = 0): string[] {
  return Array.from({ length: n }, (_, i) => `i-${(from + i).toString(16).padStart(17, "0")}`);
}

/** Every id on v1, online and managed, unless `instances` says otherwise. */
function setup(
  fleet: readonly string[],
  opts: Partial<Omit<SsmSimulatorOptions, "now">> & { plan?: (ctx: AgentRunContext) => AgentPlan } = {},
  clock: FakeClock = fakeClock(),
) {
  const client = offlineSsm();
  const instances: Record<string, SimInstance> = Object.fromEntries(fleet.map((id) => [id, { version: "v1" }]));
  const { sim, mock } = simulateSsm(client, {
    ...opts,
    now: clock.now,
    instances: { ...instances, ...(opts.instances ?? {}) },
    ...(opts.plan ? { agent: opts.plan } : {}),
  });
  const transport = new SsmTransport({
    ssm: client,
    // Mocked clients skip the SDK's retry middleware: the simulator answers both.
    sendCommandClient: client,
    documentName: DOCUMENT,
    pacing: { sleep: clock.sleep, now: clock.now, random: clock.random, log: clock.log },
  });
  return { sim, mock, transport, clock };
}

/** A plan for every run: deploys in `ms`. */
const deploysIn =
  (ms: number, extra: Partial<AgentPlan> = {}) =>
  (): AgentPlan => ({ runMs: ms, end: "deployed", ...extra });

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
        sequence: ["0"],
        executionTimeout: ["900"],
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
    expect(shareRateLimit("2", 20, 120, "errors"), "MaxErrors is never split down").to.equal("2");
    expect(shareRateLimit("25%", 50, 120, "concurrency")).to.equal("25%");
    expect(shareRateLimit("10", 20, 20, "concurrency")).to.equal("10");
  });

  it("names parameters as the deploy document declares them, and refuses a value SSM would reject", function () {
    expect(Object.keys(ssmParameters(PARAMS))).to.deep.equal(DEPLOY_PARAMETERS.map((p) => p.name));
    expect(() => ssmParameters({ ...PARAMS, healthUrl: "http://x/$(reboot)" })).to.throw(ConfigError, /^ZCP_HEALTH_URL: must match /);
  });

  it("sends nothing when a parameter is invalid", async function () {
    const { transport, mock } = setup(ids(2));
    const err = await transport.runAgent(ids(2), { ...PARAMS, version: "not a version" }, run()).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).to.be.instanceOf(ConfigError);
    expect(mock.calls()).to.have.length(0);
  });
});

describe("deploy/transports/ssm against the SSM simulator", function () {
  it("reports a successful deploy as ok, with the agent's result and progress events", async function () {
    const [id] = ids(1) as [string];
    const events: ProgressEvent[] = [];
    const { transport, mock, sim } = setup([id], { plan: deploysIn(4_200) });
    const [outcome] = await transport.runAgent([id], PARAMS, run({ onProgress: (e) => events.push(e) }));
    expect(outcome).to.include({ instanceId: id, ok: true, status: "deployed", exitCode: 0, durationMs: 4200 });
    expect(outcome?.message).to.equal("deployed v2 (was v1) in 4.2s");
    expect(outcome?.result?.previous).to.equal("v1");
    expect(events.map((e) => e.phase)).to.deep.equal(["sent", "running", "done"]);
    expect(events[2]?.status).to.equal("deployed");
    const [list] = mock.commandCalls(ListCommandInvocationsCommand);
    expect(list?.args[0].input).to.deep.equal({ CommandId: sim.sent()[0]?.commandId, Details: true, MaxResults: 50 });
    expect(mock.commandCalls(GetCommandInvocationCommand)).to.have.length(0);
    expect(sim.versions()).to.deep.equal({ [id]: "v2" });
  });

  it("reports a failed invocation with the agent's rolled_back result, exit code and stderr split off", async function () {
    const [id] = ids(1) as [string];
    const { transport } = setup([id], {
      plan: () => ({ runMs: 40_000, end: "rolled_back", message: "health check failed after 30s; rolled back to v1", stderr: "zcp-agent: last lines\n" }),
    });
    const [outcome] = await transport.runAgent([id], PARAMS, run());
    expect(outcome).to.include({ ok: false, status: "rolled_back", exitCode: 1 });
    expect(outcome?.message).to.equal("rolled back: health check failed after 30s; rolled back to v1");
  });

  it("reads SSM's spelled-out StatusDetails: Execution Timed Out is unknown state, Delivery Timed Out and Undeliverable ran nothing", async function () {
    const [slow, gone, dropped] = ids(3) as [string, string, string];
    const base = fakeClock();
    let afterSend = (): void => undefined;
    // The first sleep comes after SendCommand: both nodes are online when it is sent, then drop off.
    const clock: FakeClock = {
      ...base,
      sleep: async (ms: number) => {
        afterSend();
        afterSend = () => undefined;
        await base.sleep(ms);
      },
    };
    const { transport, sim, mock } = setup([slow, gone, dropped], { plan: (ctx) => ({ runMs: ctx.instanceId === slow ? 10_000_000 : 5_000, end: "deployed" }) }, clock);
    afterSend = () => {
      sim.setInstance(gone, { version: "v1", ping: "ConnectionLost" });
      sim.setInstance(dropped, { version: "v1", managed: false });
    };
    // One at a time: the other two wait while `slow` runs into its execution timeout.
    const outcomes = await transport.runAgent([slow, gone, dropped], PARAMS, run({ timeoutS: 120, deliveryTimeoutS: 60, maxConcurrency: "1" }));
    expect(outcomes.map((o) => [o.instanceId, o.status])).to.deep.equal([
      [slow, "timed_out"],
      [gone, "undeliverable"],
      [dropped, "undeliverable"],
    ]);
    expect(outcomes[0]?.message).to.match(/Execution Timed Out/);
    expect(outcomes[1]?.message).to.match(/Delivery Timed Out.*nothing ran/);
    expect(outcomes[2]?.message).to.match(/could not deliver/);
    expect(mock.commandCalls(GetCommandInvocationCommand)).to.have.length(0);
  });

  it("sends the document's executionTimeout separately from SendCommand's delivery timeout, so a long deploy is not killed at SSM's 3600 s default", async function () {
    const [id] = ids(1) as [string];
    const { transport, sim } = setup([id], { plan: deploysIn(4_000_000) });
    const [outcome] = await transport.runAgent([id], PARAMS, run({ timeoutS: 5_400, deliveryTimeoutS: 300 }));
    const input = sim.sent()[0]?.input;
    expect(input?.TimeoutSeconds, "delivery timeout").to.equal(300);
    expect(input?.Parameters?.executionTimeout, "execution timeout").to.deep.equal(["5400"]);
    expect(outcome).to.include({ ok: true, status: "deployed" });
  });

  it("tolerates InvocationDoesNotExist and empty lists while a new command is not yet visible", async function () {
    const [id] = ids(1) as [string];
    const { transport, mock } = setup([id], { plan: deploysIn(3_000), visibilityDelayMs: 7_000 });
    const [outcome] = await transport.runAgent([id], PARAMS, run());
    expect(outcome).to.include({ ok: true, status: "deployed" });
    const lists = await Promise.all(mock.commandCalls(ListCommandInvocationsCommand).map((c) => c.returnValue));
    expect(lists.filter((l) => (l.CommandInvocations ?? []).length === 0).length, "empty lists before the command is visible").to.be.greaterThan(0);
  });

  it("absorbs throttling bursts on SendCommand and on status calls", async function () {
    const [id] = ids(1) as [string];
    const { transport, sim, clock } = setup([id], {
      plan: deploysIn(3_000),
      throttle: { SendCommand: (n) => n === 1, ListCommandInvocations: (n) => n <= 4 },
    });
    const [outcome] = await transport.runAgent([id], PARAMS, run());
    expect(outcome).to.include({ ok: true, status: "deployed" });
    expect(sim.sent()).to.have.length(1);
    expect(clock.lines.filter((l) => l.includes("ThrottlingException"))).to.have.length(5);
  });

  it("sends 120 ids as three SendCommand calls of at most 50, sharing a count MaxConcurrency", async function () {
    const all = ids(120);
    const { transport, sim } = setup(all, { plan: deploysIn(3_000) });
    const outcomes = await transport.runAgent(all, PARAMS, run({ maxConcurrency: "10", maxErrors: "0" }));
    const sends = sim.sent().map((s) => s.input);
    expect(sends.map((s) => s.InstanceIds?.length)).to.deep.equal([50, 50, 20]);
    expect(sends.map((s) => s.MaxConcurrency)).to.deep.equal(["4", "4", "1"]);
    expect(sends.every((s) => s.DocumentName === DOCUMENT && s.MaxErrors === "0")).to.equal(true);
    expect(outcomes.map((o) => o.instanceId)).to.deep.equal(all);
    expect(outcomes.every((o) => o.ok)).to.equal(true);
  });

  it("never lets SSM terminate invocations that zcp's own MaxErrors still tolerates when a command is split", async function () {
    const all = ids(120);
    const bad = all[100] as string;
    const { transport } = setup(all, { plan: (ctx) => ({ runMs: 3_000, end: ctx.instanceId === bad ? "failed" : "deployed" }) });
    const outcomes = await transport.runAgent(all, PARAMS, run({ maxConcurrency: "10", maxErrors: "2" }));
    const byStatus = (s: string) => outcomes.filter((o) => o.status === s).map((o) => o.instanceId);
    expect(byStatus("failed")).to.deep.equal([bad]);
    expect(byStatus("cancelled"), "no invocation Terminated by SSM").to.deep.equal([]);
    expect(byStatus("deployed")).to.have.length(119);
  });

  it("costs the same status calls per poll for 1 instance as for 50", async function () {
    const one = setup(ids(1), { plan: deploysIn(9_000) });
    await one.transport.runAgent(ids(1), PARAMS, run());
    const fifty = setup(ids(50), { plan: deploysIn(9_000) });
    await fifty.transport.runAgent(ids(50), PARAMS, run());
    const calls = (m: typeof one.mock) => ({
      list: m.commandCalls(ListCommandInvocationsCommand).length,
      get: m.commandCalls(GetCommandInvocationCommand).length,
    });
    expect(calls(one.mock).get).to.equal(0);
    expect(calls(fifty.mock)).to.deep.equal(calls(one.mock));
  });

  it("reads full output with GetCommandInvocation only for an instance whose list entry was cut at 2,500 characters", async function () {
    const [a, b] = ids(2) as [string, string];
    const longLog = Array.from({ length: 60 }, (_, i) => `zcp-agent: installing dependency ${i} ${"x".repeat(40)}`);
    const { transport, mock, sim } = setup([a, b], { plan: (ctx) => ({ runMs: 3_000, end: "deployed", ...(ctx.instanceId === b ? { log: longLog } : {}) }) });
    const outcomes = await transport.runAgent([a, b], PARAMS, run());
    expect(outcomes.every((o) => o.ok)).to.equal(true);
    const gets = mock.commandCalls(GetCommandInvocationCommand);
    expect(gets.map((g) => g.args[0].input)).to.deep.equal([{ CommandId: sim.sent()[0]?.commandId, InstanceId: b }]);
  });

  it("reports a rejected input (exit 2) as rejected", async function () {
    const [a] = ids(1) as [string];
    const { transport } = setup([a], { plan: () => ({ runMs: 500, end: "rejected" }) });
    const [y] = await transport.runAgent([a], PARAMS, run());
    expect(y).to.include({ ok: false, status: "rejected", exitCode: 2 });
  });

  it("finds offline and unmanaged instances with DescribeInstanceInformation first and reports them by id, deploying the rest", async function () {
    const [a, b, c] = ids(3) as [string, string, string];
    const { transport, sim } = setup([a, b, c], {
      plan: deploysIn(3_000),
      instances: { [b]: { version: "v1", ping: "ConnectionLost" }, [c]: { version: "v1", managed: false } },
    });
    const outcomes = await transport.runAgent([a, b, c], PARAMS, run());
    expect(outcomes.map((o) => [o.instanceId, o.status])).to.deep.equal([
      [a, "deployed"],
      [b, "undeliverable"],
      [c, "undeliverable"],
    ]);
    expect(outcomes[1]?.message).to.match(/SSM agent is not online \(PingStatus ConnectionLost\)/);
    expect(outcomes[2]?.message).to.match(/not a managed node/);
    expect(sim.sent().map((s) => s.instanceIds)).to.deep.equal([[a]]);
  });

  it("does not blindly resend a SendCommand whose response was lost: it finds the first command by its comment", async function () {
    const [a] = ids(1) as [string];
    const { transport, sim } = setup([a], { plan: deploysIn(3_000), loseResponse: { SendCommand: (n) => n === 1 } });
    const [outcome] = await transport.runAgent([a], PARAMS, run());
    expect(outcome).to.include({ ok: true, status: "deployed" });
    expect(sim.sent(), "one command only").to.have.length(1);
    expect(sim.instance(a).runs).to.have.length(1);
  });

  it("stops waiting at its own deadline when SSM never reports a final state (mocked stuck SSM), cancels and reports timed out", async function () {
    const [id] = ids(1) as [string];
    const { transport, mock, clock, sim } = setup([id], { plan: deploysIn(100_000_000) });
    // Stands in for an SSM whose status never moves on: the simulator itself always ends a run.
    mock.on(ListCommandInvocationsCommand).callsFake(() => ({
      CommandInvocations: [{ CommandId: sim.sent()[0]?.commandId, InstanceId: id, Status: "InProgress", StatusDetails: STATUS_DETAILS.inProgress }],
    }));
    const [outcome] = await transport.runAgent([id], PARAMS, run({ timeoutS: 60, deliveryTimeoutS: 60 }));
    expect(outcome).to.include({ ok: false, status: "timed_out" });
    expect(outcome?.message).to.match(/no final status from SSM within \d+s/);
    expect(mock.commandCalls(CancelCommandCommand).map((c) => c.args[0].input)).to.deep.equal([{ CommandId: sim.sent()[0]?.commandId, InstanceIds: [id] }]);
    expect(clock.lines.some((l) => /^SsmDeploy: attempt \d+\/\d+ 0\/1 finished, 1 running/.test(l))).to.equal(true);
  });

  it("turns a refused SendCommand into per-instance errors naming the step and target", async function () {
    const [a, b] = ids(2) as [string, string];
    const { transport, mock } = setup([a, b]);
    mock.on(SendCommandCommand).rejects(awsError("AccessDeniedException", 400, "not authorized to perform ssm:SendCommand"));
    const outcomes = await transport.runAgent([a, b], PARAMS, run());
    expect(outcomes.map((o) => o.status)).to.deep.equal(["error", "error"]);
    expect(outcomes[0]?.message).to.equal(`SSM deploy to ${a}, ${b} failed: AccessDeniedException: not authorized to perform ssm:SendCommand`);
    expect(mock.commandCalls(ListCommandInvocationsCommand)).to.have.length(0);
  });

  it("runs on the tagged fleet with one command and learns the instances from SSM", async function () {
    const [a, b] = ids(2) as [string, string];
    const tags = { "zcp:app": "shop", "zcp:env": "dev" };
    const { transport, mock } = setup([], {
      plan: deploysIn(3_000),
      instances: { [b]: { version: "v1", tags }, [a]: { version: "v1", tags }, "i-other": { version: "v1", tags: { "zcp:app": "other" } } },
    });
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
  });

  it("returns nothing and sends nothing for an empty id list", async function () {
    const { transport, mock } = setup([]);
    expect(await transport.runAgent([], PARAMS, run())).to.deep.equal([]);
    expect(mock.calls()).to.have.length(0);
  });
});

describe("deploy/transports/ssm pure interpretation", function () {
  it("maps every terminal StatusDetails, in SSM's spelling and in the compact one", function () {
    const of = (Status: string, StatusDetails: string) =>
      outcomeFromInvocation({ instanceId: "i-1", state: invocationState({ Status: Status as never, StatusDetails }), stdout: "", stderr: "", requestedVersion: "v2", elapsedMs: 1 }).status;
    expect(of("TimedOut", STATUS_DETAILS.deliveryTimedOut)).to.equal("undeliverable");
    expect(of("TimedOut", "DeliveryTimedOut")).to.equal("undeliverable");
    expect(of("TimedOut", STATUS_DETAILS.executionTimedOut)).to.equal("timed_out");
    expect(of("TimedOut", "ExecutionTimedOut")).to.equal("timed_out");
    expect(of("Failed", STATUS_DETAILS.undeliverable)).to.equal("undeliverable");
    expect(of("Failed", STATUS_DETAILS.terminated)).to.equal("cancelled");
    expect(of("Cancelled", STATUS_DETAILS.cancelled)).to.equal("cancelled");
    expect(of("Failed", "Access Denied")).to.equal("error");
    expect(of("Failed", "Invalid Platform")).to.equal("error");
  });

  it("is not ok when the agent reports another version than the one sent", function () {
    const o = outcomeFromInvocation({
      instanceId: "i-1",
      state: "Success",
      stdout: JSON.stringify({ status: "unchanged", version: "v1", previous: "v1", duration_ms: 3 }),
      stderr: "",
      exitCode: 0,
      requestedVersion: "v2",
      elapsedMs: 5,
    });
    expect(o).to.include({ ok: false, status: "unchanged" });
    expect(o.message).to.equal("agent reports v1, expected v2");
  });

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
