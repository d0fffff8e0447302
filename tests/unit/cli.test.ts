/**
 * The command line, in-process: the parser's refusals (exit 2, the flag named, nothing
 * started), help and version, one rule per value shared with stack config, the exit code of
 * an unexpected error, and NO_COLOR / TERM=dumb.
 */
import { expect } from "chai";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { main, zcpVersion } from "../../deploy/cli.js";
import { COMMANDS, parseArgs } from "../../deploy/cli-args.js";
import { colourEnabled, cursorControlEnabled, paintFor } from "../../deploy/style.js";
import { parseConfig } from "../../shared/config.js";
import { ExitCode, ReleaseFailedError, exitCodeFor } from "../../shared/errors.js";
import { ARGUMENT_CASES, validRawConfig, withKey } from "../fixtures/bad-input/cases.js";

const ROOT = path.resolve(__dirname, "..", "..", "..");
/** A JavaScript stack frame in output: what an unreadable crash looks like. */
const STACK_FRAME = /^\s+at .+:\d+:\d+\)?$/m;

interface Captured {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `main` with stdout/stderr captured and ZCP_WORK_DIR pointed at `workDir`. */
async function runMain(argv: readonly string[], env: Record<string, string | undefined> = {}): Promise<Captured> {
  const out: string[] = [];
  const err: string[] = [];
  const saved = { out: process.stdout.write, err: process.stderr.write };
  const savedEnv: Record<string, string | undefined> = {};
  for (const [k, v] of Object.entries(env)) {
    savedEnv[k] = process.env[k];
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
  process.stdout.write = ((chunk: string | Uint8Array) => (out.push(String(chunk)), true)) as typeof process.stdout.write;
  process.stderr.write = ((chunk: string | Uint8Array) => (err.push(String(chunk)), true)) as typeof process.stderr.write;
  try {
    const code = await main(argv);
    return { code, stdout: out.join(""), stderr: err.join("") };
  } finally {
    process.stdout.write = saved.out;
    process.stderr.write = saved.err;
    for (const [k, v] of Object.entries(savedEnv)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

describe("zcp command line", function () {
  const workDir = fs.mkdtempSync(path.join(os.tmpdir(), "zcp-cli-unit-"));
  after(() => fs.rmSync(workDir, { recursive: true, force: true }));

  describe("refuses bad arguments before anything runs (exit 2, the flag named)", function () {
    const scratch = fs.mkdtempSync(path.join(os.tmpdir(), "zcp-cli-args-"));
    const marker = path.join(scratch, "injected");
    after(() => fs.rmSync(scratch, { recursive: true, force: true }));

    for (const c of ARGUMENT_CASES) {
      it(`${c.title}: zcp ${c.args.map((a) => JSON.stringify(a)).join(" ")}`, async function () {
        const args = c.args.map((a) => a.replace(/\{\{MARKER\}\}/g, marker).replace(/\{\{SCRATCH\}\}/g, scratch));
        const r = await runMain(args, { ...(c.env ?? {}), ZCP_WORK_DIR: workDir });
        expect(r.code, r.stderr).to.equal(ExitCode.BadInput);
        expect(r.stderr).to.match(/^zcp: bad input: /);
        expect(r.stderr).to.match(c.message);
        expect(r.stderr).not.to.match(STACK_FRAME);
        expect(r.stdout).to.equal("");
        // Nothing was started: the local environment would have written its state here.
        expect(fs.readdirSync(workDir), "the work folder was touched").to.deep.equal([]);
        expect(fs.existsSync(marker), "an injected command ran").to.equal(false);
      });
    }
  });

  describe("help and version", function () {
    for (const argv of [["--help"], ["-h"], ["help"], []]) {
      it(`zcp ${argv.join(" ")} lists every command and exits 0`, async function () {
        const r = await runMain(argv);
        expect(r.code).to.equal(ExitCode.Ok);
        for (const c of COMMANDS) expect(r.stdout).to.include(`zcp ${c.words}`);
        expect(r.stderr).to.equal("");
      });
    }

    for (const c of COMMANDS) {
      it(`zcp ${c.words} --help explains each of its flags and exits 0, even next to a bad flag`, async function () {
        for (const argv of [[...c.words.split(" "), "--help"], ["help", ...c.words.split(" ")], [...c.words.split(" "), "--bogus", "--help"]]) {
          const r = await runMain(argv, { ZCP_WORK_DIR: workDir });
          expect(r.code, argv.join(" ")).to.equal(ExitCode.Ok);
          expect(r.stdout).to.match(new RegExp(`^usage: zcp ${c.words} `));
          for (const name of Object.keys(c.options)) expect(r.stdout).to.include(`--${name}`);
          expect(r.stdout).to.include("exit codes:");
        }
        expect(fs.readdirSync(workDir)).to.deep.equal([]);
      });
    }

    it("zcp --version prints package.json's version and exits 0", async function () {
      const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, "package.json"), "utf8")) as { version: string };
      expect(zcpVersion()).to.equal(pkg.version);
      const r = await runMain(["--version"]);
      expect(r.code).to.equal(ExitCode.Ok);
      expect(r.stdout).to.equal(`${pkg.version}\n`);
    });

    it("zcp help for an unknown command is bad input", async function () {
      const r = await runMain(["help", "deploy"]);
      expect(r.code).to.equal(ExitCode.BadInput);
      expect(r.stderr).to.match(/command: unknown command "deploy"/);
    });
  });

  describe("one rule per value, shared with stack config", function () {
    const values = ["0", "1", "2", "25", "100", "101", "9999", "99999", "100000", "-1", "1.5", "1e3", "0%", "1%", "25%", "100%", "101%", " 2", "two"];

    function cliAccepts(flag: "--canary" | "--batch", value: string): boolean {
      try {
        parseArgs(["release", "--env", "dev", "--version", "v1", flag, value]);
        return true;
      } catch {
        return false;
      }
    }
    function configAccepts(key: "deploy.canary" | "deploy.batch", value: string): boolean {
      try {
        parseConfig(withKey(validRawConfig(), key, value), { stack: "dev" });
        return true;
      } catch {
        return false;
      }
    }

    for (const [flag, key] of [
      ["--canary", "deploy.canary"],
      ["--batch", "deploy.batch"],
    ] as const) {
      it(`${flag} accepts exactly what zcp:${key} accepts, and says so in the same words`, function () {
        const disagreements = values.filter((v) => cliAccepts(flag, v) !== configAccepts(key, v));
        expect(disagreements, `values where ${flag} and zcp:${key} disagree`).to.deep.equal([]);
        // Both sides accept some and refuse some, so the comparison above means something.
        expect(values.filter((v) => cliAccepts(flag, v)).length).to.be.greaterThan(1);
        expect(values.filter((v) => !cliAccepts(flag, v)).length).to.be.greaterThan(1);

        const problem = (fn: () => unknown) => {
          try {
            fn();
          } catch (err) {
            return (err as Error).message.replace(/^[^:]+(:[^:]+)?: /, "");
          }
          return "accepted";
        };
        const cli = problem(() => parseArgs(["release", "--env", "dev", "--version", "v1", flag, "101%"]));
        const cfg = problem(() => parseConfig(withKey(validRawConfig(), key, "101%"), { stack: "dev" }));
        expect(cli).to.equal(cfg);
      });
    }
  });

  describe("exit codes", function () {
    it("an error zcp did not anticipate exits 70, not 1 (which means a release failed and rolled back)", async function () {
      expect(exitCodeFor(new TypeError("boom"))).to.equal(ExitCode.Internal);
      expect(exitCodeFor(new ReleaseFailedError("health check failed"))).to.equal(ExitCode.ReleaseFailed);
      expect(new Set(Object.values(ExitCode)).size).to.equal(Object.values(ExitCode).length);

      // A work folder below a regular file: mkdir fails with ENOTDIR, which nothing expects.
      const file = path.join(workDir, "..", `${path.basename(workDir)}-file`);
      fs.writeFileSync(file, "");
      try {
        const r = await runMain(["local", "down"], { ZCP_WORK_DIR: path.join(file, "work"), ZCP_DEBUG: undefined });
        expect(r.code, r.stderr).to.equal(70);
        expect(r.stderr).to.match(/^zcp: unexpected error: .*ENOTDIR/m);
        expect(r.stderr).to.include("ZCP_DEBUG=1");
        expect(r.stderr).not.to.match(STACK_FRAME);
      } finally {
        fs.rmSync(file, { force: true });
      }
    });
  });

  describe("NO_COLOR and TERM=dumb", function () {
    const tty = { isTTY: true };
    it("colour only on a terminal, and never with NO_COLOR set or TERM=dumb", function () {
      expect(colourEnabled(tty, { TERM: "xterm-256color" })).to.equal(true);
      expect(paintFor(tty, { TERM: "xterm" }).red("failed")).to.equal("\x1b[31mfailed\x1b[0m");
      expect(colourEnabled({ isTTY: false }, { TERM: "xterm" })).to.equal(false);
      expect(paintFor(tty, { TERM: "xterm", NO_COLOR: "1" }).red("failed")).to.equal("failed");
      expect(paintFor(tty, { TERM: "dumb" }).bold("x")).to.equal("x");
      // no-color.org: an empty NO_COLOR does not count.
      expect(colourEnabled(tty, { TERM: "xterm", NO_COLOR: "" })).to.equal(true);
    });

    it("the live progress line (cursor movement) only on a real terminal outside CI, never with TERM=dumb", function () {
      expect(cursorControlEnabled(tty, { TERM: "xterm" })).to.equal(true);
      expect(cursorControlEnabled(tty, { TERM: "dumb" })).to.equal(false);
      expect(cursorControlEnabled(tty, { TERM: "xterm", CI: "true" })).to.equal(false);
      expect(cursorControlEnabled({ isTTY: false }, { TERM: "xterm" })).to.equal(false);
    });

    it("error messages carry no escape codes when NO_COLOR is set, even on a terminal", async function () {
      const stderr = process.stderr as { isTTY?: boolean | undefined };
      const was = stderr.isTTY;
      stderr.isTTY = true;
      try {
        const plain = await runMain(["release", "--env", "local"], { NO_COLOR: "1", TERM: "xterm" });
        expect(plain.stderr).to.equal("zcp: bad input: --version: is required\n");
        const coloured = await runMain(["release", "--env", "local"], { NO_COLOR: undefined, TERM: "xterm" });
        expect(coloured.stderr).to.include("\x1b[31m");
      } finally {
        stderr.isTTY = was;
      }
    });
  });
  describe("zcp config get: one validated value of a foundation stack, read before any AWS session", function () {
    const project = fs.mkdtempSync(path.join(os.tmpdir(), "zcp-cli-config-"));
    const devYaml = fs.readFileSync(path.join(ROOT, "Pulumi.dev.yaml"), "utf8");
    /** A project whose dev stack config is Pulumi.dev.yaml with `edit` applied. */
    function projectWith(edit: (yaml: string) => string): string {
      fs.copyFileSync(path.join(ROOT, "Pulumi.yaml"), path.join(project, "Pulumi.yaml"));
      const edited = edit(devYaml);
      expect(edited, "the edit changed the stack config").to.not.equal(devYaml);
      fs.writeFileSync(path.join(project, "Pulumi.dev.yaml"), edited);
      return project;
    }
    const withSession = (seconds: string) => (yaml: string) => yaml.replace(/^( {4}repo: web\n)/m, `$1    sessionDurationS: ${seconds}\n`);
    // No credentials and an unreachable endpoint: a command that called AWS would fail.
    const noAws = { AWS_ACCESS_KEY_ID: undefined, AWS_PROFILE: undefined, AWS_ENDPOINT_URL: "http://127.0.0.1:9", PULUMI_BACKEND_URL: undefined };
    after(() => fs.rmSync(project, { recursive: true, force: true }));

    it("prints the session length the stack configures (the workflows' role-duration-seconds), defaults applied", async function () {
      const configured = await runMain(["config", "get", "github.sessionDurationS", "--env", "dev"], { ...noAws, ZCP_PROJECT_DIR: projectWith(withSession("7200")) });
      expect(configured.code, configured.stderr).to.equal(ExitCode.Ok);
      expect(configured.stdout).to.equal("7200\n");
      const byDefault = await runMain(["config", "get", "zcp:github.sessionDurationS", "--env", "dev"], { ...noAws, ZCP_PROJECT_DIR: ROOT });
      expect(byDefault.code, byDefault.stderr).to.equal(ExitCode.Ok);
      expect(byDefault.stdout).to.equal("14400\n");
      const json = await runMain(["config", "get", "deploy.batch", "--env", "dev", "--json"], { ...noAws, ZCP_PROJECT_DIR: ROOT });
      expect(JSON.parse(json.stdout)).to.equal("50%");
    });

    it("an unknown key is bad input naming the key (exit 2, nothing printed)", async function () {
      const r = await runMain(["config", "get", "github.sessionDuration", "--env", "dev"], { ...noAws, ZCP_PROJECT_DIR: ROOT });
      expect(r.code).to.equal(ExitCode.BadInput);
      expect(r.stderr).to.match(/^zcp: bad input: zcp:github\.sessionDuration: is not a zcp config key/);
      expect(r.stdout).to.equal("");
    });

    it("validates the whole config first: an out-of-range session is refused, naming the field", async function () {
      const r = await runMain(["config", "get", "github.sessionDurationS", "--env", "dev"], { ...noAws, ZCP_PROJECT_DIR: projectWith(withSession("900")) });
      expect(r.code).to.equal(ExitCode.BadInput);
      expect(r.stderr).to.match(/zcp:github\.sessionDurationS: /);
      expect(r.stdout).to.equal("");
    });

    it("refuses a key that is not a plain dotted name, a missing key and the local environment", async function () {
      for (const [argv, message] of [
        [["config", "get", "github.$(id)", "--env", "dev"], /KEY: must be a config key/],
        [["config", "get", "--env", "dev"], /KEY: is required/],
        [["config", "get", "github.repo", "deploy.batch", "--env", "dev"], /unexpected argument "deploy.batch"/],
        [["config", "get", "github.repo", "--env", "local"], /--env: the local environment has no stack config/],
        [["config", "get", "github.repo", "--env", "qa"], /--env: unknown environment "qa"/],
      ] as const) {
        const r = await runMain([...argv], { ...noAws, ZCP_PROJECT_DIR: ROOT, ZCP_WORK_DIR: workDir });
        expect(r.code, argv.join(" ")).to.equal(ExitCode.BadInput);
        expect(r.stderr, argv.join(" ")).to.match(message);
      }
      expect(fs.readdirSync(workDir)).to.deep.equal([]);
    });
  });
});
