/**
 * actionlint over the workflows: syntax, expressions and contexts, the inputs given to actions
 * (checked against the local composite actions' own metadata too), and every `run:` block
 * through shellcheck. What actionlint does not read, the scripts the workflows call
 * (.github/scripts) and the `run:` steps of the composite actions, goes through shellcheck
 * directly.
 *
 * actionlint is installed by scripts/tools.sh into .tools/bin; a missing actionlint or
 * shellcheck fails these tests instead of skipping them, since a skipped lint would pass
 * broken workflows.
 */
import { expect } from "chai";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { parse as parseYaml } from "yaml";
import { findRepoRoot } from "../../deploy/repo.js";

const ROOT = findRepoRoot();
const ACTIONLINT = path.join(ROOT, ".tools", "bin", "actionlint");
const BROKEN_WORKFLOW = path.join("tests", "fixtures", "workflows", "lint", "broken.yml");

/** The first executable named `name` on PATH. */
function onPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? "").split(path.delimiter)) {
    const candidate = path.join(dir, name);
    try {
      fs.accessSync(candidate, fs.constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

function requireTool(file: string | undefined, what: string): string {
  if (!file || !fs.existsSync(file)) {
    throw new Error(`${what} is missing; run \`bash scripts/tools.sh\``);
  }
  return file;
}

interface LintRun {
  status: number | null;
  output: string;
}

function actionlint(args: readonly string[]): LintRun {
  const shellcheck = requireTool(onPath("shellcheck"), "shellcheck");
  const run = spawnSync(requireTool(ACTIONLINT, "actionlint (.tools/bin/actionlint)"), [`-shellcheck=${shellcheck}`, "-pyflakes=", "-no-color", ...args], {
    cwd: ROOT,
    encoding: "utf8",
    timeout: 120_000,
  });
  if (run.error) throw run.error;
  return { status: run.status, output: `${run.stdout}${run.stderr}` };
}

describe("actionlint", function () {
  this.timeout(180_000);

  it("is installed (scripts/tools.sh puts it in .tools/bin)", () => {
    const run = spawnSync(requireTool(ACTIONLINT, "actionlint (.tools/bin/actionlint)"), ["-version"], { encoding: "utf8" });
    expect(run.status).to.equal(0);
    expect(run.stdout).to.match(/^v?\d+\.\d+\.\d+/);
  });

  it("has shellcheck, so run: blocks are checked too", () => {
    const shellcheck = requireTool(onPath("shellcheck"), "shellcheck (Debian package shellcheck)");
    expect(spawnSync(shellcheck, ["--version"], { encoding: "utf8" }).status).to.equal(0);
  });

  it("reports nothing for .github/workflows", () => {
    const run = actionlint([]);
    expect(run.output, run.output).to.equal("");
    expect(run.status).to.equal(0);
  });

  it("rejects a workflow with an unknown step output and an unquoted shell variable", () => {
    const run = actionlint([BROKEN_WORKFLOW]);
    expect(run.status).to.equal(1);
    expect(run.output).to.include('property "versoin" is not defined').and.include("[expression]");
    expect(run.output).to.match(/SC2086.*\[shellcheck\]/);
  });

  it("shellcheck passes the scripts the workflows call", () => {
    const dir = path.join(ROOT, ".github", "scripts");
    const scripts = fs.readdirSync(dir).filter((f) => f.endsWith(".sh")).map((f) => path.join(dir, f));
    expect(scripts.length, ".github/scripts/*.sh").to.be.greaterThan(0);
    const run = spawnSync(requireTool(onPath("shellcheck"), "shellcheck"), ["--severity=style", ...scripts], { encoding: "utf8" });
    expect(`${run.stdout}${run.stderr}`).to.equal("");
    expect(run.status).to.equal(0);
  });

  it("shellcheck passes the run: steps of the composite actions", () => {
    const shellcheck = requireTool(onPath("shellcheck"), "shellcheck");
    const dir = path.join(ROOT, ".github", "actions");
    const steps = fs
      .readdirSync(dir)
      .map((d) => path.join(dir, d, "action.yml"))
      .filter((f) => fs.existsSync(f))
      .flatMap((f) => {
        const action = parseYaml(fs.readFileSync(f, "utf8")) as { runs?: { steps?: { name?: string; run?: string; shell?: string }[] } };
        return (action.runs?.steps ?? []).filter((s) => s.run !== undefined).map((s) => ({ where: `${path.relative(ROOT, f)} › ${s.name ?? "step"}`, ...s }));
      });
    expect(steps.length, "composite action run: steps").to.be.greaterThan(0);
    for (const step of steps) {
      expect(step.shell, `${step.where}: composite run steps name their shell`).to.equal("bash");
      const run = spawnSync(shellcheck, ["--shell=bash", "--severity=style", "-"], { input: step.run, encoding: "utf8" });
      expect(`${run.stdout}${run.stderr}`, step.where).to.equal("");
      expect(run.status, step.where).to.equal(0);
    }
  });
});
