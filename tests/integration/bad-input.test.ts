/**
 * Bad input, as a table (tests/fixtures/bad-input/cases.ts): hostile or malformed CLI flags,
 * stack configuration keys and deploy-agent variables. Each is refused as bad input (exit 2,
 * or a ConfigError naming the field) and changes nothing anywhere: for CLI cases the bucket
 * (every object version), the images, the image parameter, what each instance serves
 * (and its app's pid), the instances' deploy logs and the release stack's state files are the
 * same before and after; for agent cases no injected command ran and no app dir appeared.
 */
import { expect } from "chai";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { ZcpHarness } from "../helpers/zcp.js";
import { REPO_ROOT } from "../helpers/emulator.js";
import { snapshotWorld } from "../helpers/faults.js";
import { testAppUser } from "../helpers/supervisor.js";
import {
  AGENT_CASES,
  CLI_CASES,
  CONFIG_CASES,
  prepareScratch,
  validAgentEnv,
  validRawConfig,
  withKey,
} from "../fixtures/bad-input/cases.js";
import { parseConfig } from "../../shared/config.js";
import { ConfigError, ExitCode, exitCodeFor } from "../../shared/errors.js";

/** A JavaScript stack frame in output: what an unreadable crash looks like. */
const STACK_FRAME = /^\s+at .+:\d+:\d+\)?$/m;

function fill(value: string, vars: Record<string, string>): string {
  return value.replace(/\{\{([A-Z]+)\}\}/g, (whole, name: string) => vars[name] ?? whole);
}

describe("bad input is refused as bad input and changes nothing", function () {
  describe("CLI flags, on a local environment with one release (the real zcp)", function () {
    const RELEASED = "b-good";
    const zcp = new ZcpHarness(3);
    const scratch = fs.mkdtempSync(path.join(os.tmpdir(), "zcp-bad-input-"));
    const vars = { MARKER: path.join(scratch, "injected"), SCRATCH: scratch, RELEASED };

    before(async function () {
      prepareScratch(scratch);
      const r = await zcp.run(["release", "--env", "local", "--version", RELEASED]);
      expect(r.code, r.stdout + r.stderr).to.equal(0);
    });
    after(async function () {
      await zcp.teardown();
      fs.rmSync(scratch, { recursive: true, force: true });
    });

    for (const c of CLI_CASES) {
      it(`${c.title}: zcp ${c.args.map((a) => JSON.stringify(a)).join(" ")}`, async function () {
        const before = await snapshotWorld(zcp);
        const r = await zcp.run(
          c.args.map((a) => fill(a, vars)),
          c.env ?? {},
        );
        expect(r.code, r.stdout + r.stderr).to.equal(ExitCode.BadInput);
        expect(r.stderr, r.stderr).to.match(/^zcp: /m);
        expect(r.stderr, r.stderr).to.match(c.message);
        expect(r.stderr, r.stderr).not.to.match(STACK_FRAME);
        expect(await snapshotWorld(zcp), "nothing changed").to.deep.equal(before);
        expect(fs.existsSync(vars.MARKER), "an injected command ran").to.equal(false);
      });
    }
  });

  describe("stack configuration keys (parseConfig)", function () {
    it("the unchanged config is valid, so each case below fails for its one key", function () {
      expect(() => parseConfig(validRawConfig(), { stack: "dev" })).not.to.throw();
    });

    for (const c of CONFIG_CASES) {
      it(`${c.title}: ${c.key} = ${JSON.stringify(c.value)} names ${c.field}`, function () {
        let caught: unknown;
        try {
          parseConfig(withKey(validRawConfig(), c.key, c.value), { stack: "dev" });
        } catch (err) {
          caught = err;
        }
        expect(caught, "refused").to.be.instanceOf(ConfigError);
        const err = caught as ConfigError;
        expect(err.field).to.equal(c.field);
        expect(err.message.startsWith(`${c.field}: `), err.message).to.equal(true);
        expect(exitCodeFor(err)).to.equal(ExitCode.BadInput);
      });
    }
  });

  describe("deploy agent variables (shared/agent/zcp-agent.sh)", function () {
    const scratch = fs.mkdtempSync(path.join(os.tmpdir(), "zcp-bad-agent-"));
    const vars = { MARKER: path.join(scratch, "injected"), SCRATCH: scratch };
    const appDir = path.join(scratch, "app");
    after(() => fs.rmSync(scratch, { recursive: true, force: true }));

    function runAgent(env: Record<string, string>) {
      const r = spawnSync("bash", [path.join(REPO_ROOT, "shared", "agent", "zcp-agent.sh")], {
        // Nothing of the caller's environment but PATH: the agent sees only what a deploy sends.
        env: { PATH: [path.join(REPO_ROOT, ".tools", "venv", "bin"), process.env.PATH ?? "/usr/bin:/bin"].join(path.delimiter), LANG: "C.UTF-8", ...env },
        encoding: "utf8",
        timeout: 60000,
      });
      const last = r.stdout.trimEnd().split("\n").at(-1) ?? "";
      return { code: r.status, stdout: r.stdout, stderr: r.stderr, result: JSON.parse(last) as Record<string, unknown> };
    }

    it("the unchanged variables are accepted (the deploy then fails to fetch), so each case below fails for its one variable", function () {
      const r = runAgent(validAgentEnv(scratch, testAppUser()));
      expect(r.code, r.stdout + r.stderr).to.equal(1);
      expect(r.result.reason, JSON.stringify(r.result)).to.equal(undefined);
      expect(String(r.result.message)).to.match(/fetch/);
      expect(fs.existsSync(appDir), "a deploy that cannot fetch creates no app dir").to.equal(false);
    });

    for (const c of AGENT_CASES) {
      it(`${c.title}: ${c.variable}=${JSON.stringify(c.value)}`, function () {
        const entries = fs.readdirSync(scratch).sort();
        const env = { ...validAgentEnv(scratch, testAppUser()), [c.variable]: fill(c.value, vars) };
        const r = runAgent(env);
        expect(r.code, r.stdout + r.stderr).to.equal(2);
        expect(r.result, JSON.stringify(r.result)).to.include({ status: "failed", reason: "rejected" });
        expect(String(r.result.message)).to.match(/nothing was changed/);
        expect(fs.existsSync(vars.MARKER), "an injected command ran").to.equal(false);
        expect(fs.existsSync(appDir), "the app dir was created").to.equal(false);
        expect(fs.existsSync(path.join(scratch, "..", "etc", "releases")), "something was written beside the scratch dir").to.equal(false);
        expect(fs.readdirSync(scratch).sort(), "nothing was written, not even a lock file").to.deep.equal(entries);
      });
    }
  });
});
