/**
 * Proof that the real Pulumi engine runs here: an inline program holding one dynamic-provider
 * resource on a temporary file backend, driven through the automation API.
 */
import { expect } from "chai";
import * as pulumi from "@pulumi/pulumi";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { ConcurrentUpdateError, LocalWorkspace, type EngineEvent } from "@pulumi/pulumi/automation/index.js";
import { REPO_ROOT } from "../helpers/emulator.js";
import { engineEnv, uniqueName } from "../helpers/stack.js";
import { withStack } from "../helpers/stack.js";
import { classifyEngineError } from "../../deploy/engine-errors.js";
import { ReleaseLockedError, ExitCode } from "../../shared/errors.js";

interface GreetingInputs {
  greeting: string;
  delayMs: number;
}

// The provider is serialized into the engine's dynamic-provider host, so it captures nothing
// but plain values.
const greetingProvider: pulumi.dynamic.ResourceProvider = {
  async check(_olds: GreetingInputs, news: GreetingInputs) {
    return { inputs: news };
  },
  async diff(_id: string, olds: GreetingInputs, news: GreetingInputs) {
    const changed = olds.greeting !== news.greeting;
    return { changes: changed, replaces: [], stables: [] };
  },
  async create(inputs: GreetingInputs) {
    await new Promise((r) => setTimeout(r, inputs.delayMs));
    return { id: "greeting", outs: { ...inputs, message: `${inputs.greeting}, world`, updates: 0 } };
  },
  async update(_id: string, olds: { updates: number }, news: GreetingInputs) {
    await new Promise((r) => setTimeout(r, news.delayMs));
    return { outs: { ...news, message: `${news.greeting}, world`, updates: olds.updates + 1 } };
  },
  async delete() {
    /* nothing outside the state */
  },
};

class Greeting extends pulumi.dynamic.Resource {
  declare readonly message: pulumi.Output<string>;
  declare readonly updates: pulumi.Output<number>;
  constructor(name: string, args: { greeting: string; delayMs: number }) {
    super(greetingProvider, name, { ...args, message: undefined, updates: undefined }, {});
  }
}

function program(greeting: string, delayMs = 0) {
  return async () => {
    const g = new Greeting("hello", { greeting, delayMs });
    return { message: g.message, updates: g.updates };
  };
}

describe("the Pulumi engine (real CLI, file backend, dynamic provider)", function () {
  it("previews an update that names the changed input, then runs the provider's update", async function () {
    await withStack(program("hello"), async ({ stack }) => {
      const first = await stack.up({ onOutput: () => undefined });
      expect(first.summary.result).to.equal("succeeded");
      expect(first.outputs.message?.value).to.equal("hello, world");
      expect(first.outputs.updates?.value).to.equal(0);

      stack.workspace.program = program("bonjour");
      const events: EngineEvent[] = [];
      const preview = await stack.preview({ diff: true, onEvent: (e) => events.push(e) });
      expect(preview.changeSummary.update).to.equal(1);
      const pre = events
        .map((e) => e.resourcePreEvent?.metadata)
        .find((m) => m?.type === "pulumi-nodejs:dynamic:Resource");
      expect(pre?.op).to.equal("update");
      // Dynamic providers report whether something changed, not which key; the engine's own
      // diff of old and new inputs names it.
      const changedInputs = Object.keys(pre?.new?.inputs ?? {}).filter(
        (k) => JSON.stringify(pre?.old?.inputs?.[k]) !== JSON.stringify(pre?.new?.inputs?.[k]),
      );
      expect(changedInputs).to.deep.equal(["greeting"]);
      expect(preview.stdout).to.match(/greeting\s*:\s*"hello"\s*=>\s*"bonjour"/);

      const second = await stack.up({ onOutput: () => undefined });
      expect(second.summary.resourceChanges?.update).to.equal(1);
      expect(second.outputs.message?.value).to.equal("bonjour, world");
      expect(second.outputs.updates?.value).to.equal(1);
    });
  });

  it("surfaces a concurrent update as ConcurrentUpdateError, mapped to zcp's lock error (exit 3)", async function () {
    await withStack(program("one"), async ({ stack, backendDir, projectName, stackName }) => {
      await stack.up({ onOutput: () => undefined });
      // Hold the stack with a slow update, then start a second one while it runs.
      stack.workspace.program = program("two", 8000);
      const slow = stack.up({ onOutput: () => undefined });
      await new Promise((r) => setTimeout(r, 2500));
      stack.workspace.program = program("three");
      let caught: unknown;
      try {
        await stack.up({ onOutput: () => undefined });
      } catch (err) {
        caught = err;
      }
      // Classify while the winner still holds the lock, so its holder can be named.
      const mapped = classifyEngineError(caught, {
        environment: "test",
        fileBackend: { dir: backendDir, project: projectName, stack: stackName },
      });
      const winner = await slow;
      expect(winner.summary.result).to.equal("succeeded");
      expect(caught, "the second update must fail").to.be.instanceOf(ConcurrentUpdateError);
      expect(mapped).to.be.instanceOf(ReleaseLockedError);
      expect(mapped.exitCode).to.equal(ExitCode.Locked);
      expect(mapped.message).to.match(/another release of "test" is in progress \(lock held by .*pid \d+/);
    });
  });

  it("runs a nodejs project (not inline) through the Node.js language host", async function () {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "zcp-lh-"));
    const state = fs.mkdtempSync(path.join(os.tmpdir(), "zcp-lh-state-"));
    try {
      fs.symlinkSync(path.join(REPO_ROOT, "node_modules"), path.join(dir, "node_modules"));
      fs.writeFileSync(path.join(dir, "Pulumi.yaml"), "name: zcp-language-host-check\nruntime: nodejs\nmain: index.js\n");
      fs.writeFileSync(path.join(dir, "package.json"), JSON.stringify({ name: "zcp-language-host-check", private: true }));
      fs.writeFileSync(
        path.join(dir, "index.js"),
        [
          'const pulumi = require("@pulumi/pulumi");',
          "const provider = { async create(inputs) { return { id: 'x', outs: { echoed: inputs.word + '!' } }; } };",
          "class Echo extends pulumi.dynamic.Resource { constructor(n, a) { super(provider, n, { ...a, echoed: undefined }, {}); } }",
          "exports.echoed = new Echo('echo', { word: 'ready' }).echoed;",
        ].join("\n"),
      );
      const stack = await LocalWorkspace.createOrSelectStack(
        { stackName: uniqueName("lh"), workDir: dir },
        { envVars: engineEnv(`file://${state}`) },
      );
      const up = await stack.up({ onOutput: () => undefined });
      expect(up.outputs.echoed?.value).to.equal("ready!");
      await stack.destroy({ onOutput: () => undefined });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
      fs.rmSync(state, { recursive: true, force: true });
    }
  });
});
