/**
 * actionlint over the workflows: syntax, expressions and contexts, action inputs (including
 * the local composite actions), and every `run:` block through shellcheck. The scripts the
 * workflows call (.github/scripts) go through shellcheck directly.
 *
 * actionlint is installed by scripts/tools.sh into .tools/bin; a missing actionlint or
 * shellcheck fails these tests instead of skipping them, since a skipped lint would pass
 * broken workflows.
 */
import { expect } from "chai";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
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
});
