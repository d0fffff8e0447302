/**
 * The GitHub workflows keep zcp's promise that no long-lived credential exists anywhere:
 *
 *   - AWS is reached only through OIDC role sessions (`id-token: write`, `role-to-assume`, a
 *     session name carrying the run id); no access key and no stored secret is referenced;
 *   - permissions are declared per job and minimal; only the job that comments on pull
 *     requests may write to them, and that job runs no code of the pull request;
 *   - every third-party action is pinned to a full commit SHA, with its version in a comment;
 *   - checkout never leaves the job's token behind for later steps;
 *   - a job that changes an environment names that GitHub environment (so its OIDC subject is
 *     `repo:OWNER/REPO:environment:ENV`), queues per environment and is never cancelled
 *     halfway; prod changes only from `v*` tags;
 *   - event values never reach shell or script text except through environment variables.
 *
 * Each rule is a checker run against the real workflows (which must pass) and against the bad
 * fixtures in tests/fixtures/workflows/, each of which must be flagged for exactly the rules
 * its `# expect:` line names, so a rule that stops catching anything fails here too.
 * The workflows' zcp commands, and those in the docs, are parsed with the CLI's own parser.
 */
import { expect } from "chai";
import * as fs from "node:fs";
import * as path from "node:path";
import { parse as parseYaml } from "yaml";
import { parseArgs } from "../../deploy/cli-args.js";
import { findRepoRoot } from "../../deploy/repo.js";

const ROOT = findRepoRoot();
const WORKFLOW_DIR = path.join(ROOT, ".github", "workflows");
const ACTION_DIR = path.join(ROOT, ".github", "actions");
const FIXTURE_DIR = path.join(ROOT, "tests", "fixtures", "workflows");

// ---------------------------------------------------------------------------------------
// The parts of the workflow syntax the checks read
// ---------------------------------------------------------------------------------------

interface Step {
  name?: string;
  id?: string;
  if?: string;
  uses?: string;
  run?: string;
  with?: Record<string, unknown>;
  env?: Record<string, unknown>;
}

interface Job {
  name?: string;
  if?: string;
  needs?: string | string[];
  environment?: string | { name?: string };
  concurrency?: string | { group?: string; "cancel-in-progress"?: unknown };
  permissions?: unknown;
  env?: Record<string, unknown>;
  steps?: Step[];
  /** A reusable workflow called as a job. */
  uses?: string;
  secrets?: unknown;
}

interface Workflow {
  name?: string;
  on?: unknown;
  permissions?: unknown;
  concurrency?: string | { group?: string; "cancel-in-progress"?: unknown };
  env?: Record<string, unknown>;
  jobs?: Record<string, Job>;
}

interface CompositeAction {
  runs?: { using?: string; steps?: Step[] };
}

const RULES = [
  "static-credentials",
  "stored-secrets",
  "oidc",
  "permissions",
  "pinned-actions",
  "checkout-credentials",
  "release-concurrency",
  "environment-gate",
  "expression-injection",
  "triggers",
] as const;
type Rule = (typeof RULES)[number];

interface Finding {
  rule: Rule;
  where: string;
  message: string;
}

// ---------------------------------------------------------------------------------------
// What a job does
// ---------------------------------------------------------------------------------------

/** Commands that reach an environment's AWS account or its state backend: each needs a role session. */
const AWS_COMMAND = /\b(?:zcp\s+(?:release|rollback|preview|status|history)|pulumi\s+(?:up|preview|refresh|destroy|import|cancel|login|stack|state|config))\b/;
/** Commands that change an environment. */
const CHANGE_COMMAND = /\b(?:zcp\s+(?:release|rollback)|pulumi\s+(?:up|refresh|destroy|import|cancel|state))\b/;
const CONFIGURE_AWS = "aws-actions/configure-aws-credentials@";
const CHECKOUT = "actions/checkout@";
const GITHUB_SCRIPT = "actions/github-script@";
/** Role variables follow `ZCP_<ENV>_<KIND>_ROLE_ARN`, so a role's environment can be checked. */
const ROLE_VARIABLE = /^\$\{\{\s*vars\.ZCP_([A-Z0-9]+)_(RELEASE|FOUNDATION|PREVIEW)_ROLE_ARN\s*\}\}$/;
const PINNED_ACTION = /^[A-Za-z0-9_.-]+\/[A-Za-z0-9_./-]+@[0-9a-f]{40}$/;
const PROD_TAG_CONDITION = /startsWith\(\s*github\.ref\s*,\s*'refs\/tags\/v'\s*\)/;

const steps = (job: Job): Step[] => job.steps ?? [];
const usesAction = (step: Step, prefix: string): boolean => (step.uses ?? "").startsWith(prefix);
const runText = (step: Step): string => (typeof step.run === "string" ? step.run : "");

function environmentOf(job: Job): string | undefined {
  if (typeof job.environment === "string") return job.environment;
  return job.environment?.name;
}

function touchesAws(job: Job): boolean {
  return steps(job).some((s) => usesAction(s, CONFIGURE_AWS) || AWS_COMMAND.test(runText(s)));
}

function changesEnvironment(job: Job): boolean {
  return steps(job).some((s) => CHANGE_COMMAND.test(runText(s)));
}

/** A job that posts to pull requests: it comments through github-script. */
function commentsOnPullRequests(job: Job): boolean {
  return steps(job).some((s) => usesAction(s, GITHUB_SCRIPT) && /\bissues\.(?:createComment|updateComment)\b/.test(String(s.with?.script ?? "")));
}

/** The environments a job's commands name with `--env X` or `--stack X`. */
function commandTargets(job: Job): string[] {
  const targets = new Set<string>();
  for (const s of steps(job)) {
    for (const m of runText(s).matchAll(/--(?:env|stack)[=\s]+["']?([A-Za-z0-9/_.-]+)/g)) {
      targets.add((m[1] ?? "").split("/").pop() ?? "");
    }
  }
  return [...targets];
}

function cancelInProgress(c: Job["concurrency"]): unknown {
  return typeof c === "object" && c !== null ? c["cancel-in-progress"] : undefined;
}

const isFalse = (v: unknown): boolean => v === false || v === "false";

// ---------------------------------------------------------------------------------------
// The checks
// ---------------------------------------------------------------------------------------

/** Checks one workflow file's text; returns every problem found (none for a good workflow). */
function checkWorkflow(file: string, text: string): Finding[] {
  const findings: Finding[] = [];
  const add = (rule: Rule, where: string, message: string) => findings.push({ rule, where: `${file}${where ? ` › ${where}` : ""}`, message });
  const wf = parseYaml(text) as Workflow;
  const jobs = Object.entries(wf.jobs ?? {});

  checkText(text, add);
  checkTriggers(wf, add);
  checkWorkflowPermissions(wf, add);

  const deploys = jobs.some(([, job]) => changesEnvironment(job));
  if (deploys && wf.concurrency !== undefined && !isFalse(cancelInProgress(wf.concurrency) ?? false)) {
    add("release-concurrency", "concurrency", "a workflow that changes environments must not cancel a run in progress");
  }

  for (const [id, job] of jobs) {
    checkJobPermissions(id, job, add);
    checkOidc(id, job, add);
    checkSteps(id, steps(job), add);
    checkEnvironmentGate(id, job, add);
    checkReleaseConcurrency(id, job, add);
    if (job.secrets !== undefined) add("stored-secrets", id, "passes secrets to a reusable workflow");
  }
  return findings;
}

/** Checks a local composite action (`.github/actions/NAME/action.yml`). */
function checkCompositeAction(file: string, text: string): Finding[] {
  const findings: Finding[] = [];
  const add = (rule: Rule, where: string, message: string) => findings.push({ rule, where: `${file}${where ? ` › ${where}` : ""}`, message });
  const action = parseYaml(text) as CompositeAction;
  checkText(text, add);
  checkSteps("runs", action.runs?.steps ?? [], add);
  return findings;
}

type Add = (rule: Rule, where: string, message: string) => void;

/** Inputs and variables that carry static AWS credentials. */
const STATIC_AWS_CREDENTIALS = /aws-access-key-id|aws-secret-access-key|aws-session-token|AWS_SECRET|AWS_ACCESS_KEY|AWS_SESSION_TOKEN/i;

/** Rules about the raw text: no access keys, no stored secrets, versions beside pinned SHAs. */
function checkText(text: string, add: Add): void {
  const keys = STATIC_AWS_CREDENTIALS.exec(text);
  if (keys) add("static-credentials", "", `mentions ${keys[0]}: AWS is reached through OIDC role sessions only`);

  for (const m of text.matchAll(/\$\{\{([^}]*)\}\}/g)) {
    const expression = m[1] ?? "";
    if (/\bsecrets\b/.test(expression.replace(/\bsecrets\.GITHUB_TOKEN\b/g, ""))) {
      add("stored-secrets", "", `reads a stored secret (${m[0].trim()}); zcp's workflows hold none`);
    }
  }

  text.split("\n").forEach((line, index) => {
    const m = /^\s*(?:-\s+)?uses:\s*(["']?)([^\s"'#]+)\1\s*(#.*)?$/.exec(line);
    if (!m) return;
    const ref = m[2] ?? "";
    if (ref.startsWith("./") || ref.startsWith("docker://")) return;
    if (PINNED_ACTION.test(ref) && !/#\s*v\d+(?:\.\d+)*\b/.test(m[3] ?? "")) {
      add("pinned-actions", `line ${index + 1}`, `${ref} is pinned but does not say its version in a comment (# vX.Y.Z)`);
    }
  });
}

function checkTriggers(wf: Workflow, add: Add): void {
  const on = wf.on;
  const events = typeof on === "string" ? [on] : Array.isArray(on) ? on.map(String) : Object.keys((on ?? {}) as object);
  for (const risky of ["pull_request_target", "workflow_run"]) {
    if (events.includes(risky)) add("triggers", "on", `${risky} runs code a pull request controls with the base repository's rights`);
  }
}

function checkWorkflowPermissions(wf: Workflow, add: Add): void {
  const p = wf.permissions;
  if (p === undefined) {
    add("permissions", "permissions", "declare `permissions: {}` (or read-only) at the top; jobs ask for what they need");
  } else if (typeof p === "string") {
    if (p !== "read-all") add("permissions", "permissions", `workflow-level permissions "${p}"; use {} or read-only`);
  } else if (typeof p === "object" && p !== null) {
    for (const [scope, level] of Object.entries(p)) {
      if (level !== "read" && level !== "none") add("permissions", "permissions", `workflow-level ${scope}: ${String(level)}; grant writes per job`);
    }
  }
}

function checkJobPermissions(id: string, job: Job, add: Add): void {
  const p = job.permissions;
  if (p === undefined) {
    add("permissions", id, "no job-level permissions");
    return;
  }
  if (typeof p !== "object" || p === null) {
    add("permissions", id, `permissions "${String(p)}"; list the scopes the job needs`);
    return;
  }
  const aws = touchesAws(job);
  const comments = commentsOnPullRequests(job);
  for (const [scope, level] of Object.entries(p as Record<string, unknown>)) {
    if (level === "none") continue;
    const allowed =
      (scope === "contents" && level === "read") ||
      (scope === "id-token" && level === "write" && aws) ||
      (scope === "pull-requests" && level === "write" && comments);
    if (!allowed) add("permissions", id, `${scope}: ${String(level)} is more than this job needs`);
  }
  if ((p as Record<string, unknown>)["pull-requests"] === "write") {
    const runsCode = steps(job).some((s) => s.run !== undefined || usesAction(s, CHECKOUT) || (s.uses ?? "").startsWith("./"));
    if (runsCode) add("permissions", id, "a job that may write to pull requests must not check out or run code");
  }
}

function checkOidc(id: string, job: Job, add: Add): void {
  if (!touchesAws(job)) return;
  const p = (typeof job.permissions === "object" && job.permissions !== null ? job.permissions : {}) as Record<string, unknown>;
  if (p["id-token"] !== "write") add("oidc", id, "reaches AWS without `id-token: write`");
  const all = steps(job);
  const configure = all.findIndex((s) => usesAction(s, CONFIGURE_AWS));
  const firstAwsCommand = all.findIndex((s) => AWS_COMMAND.test(runText(s)));
  if (configure < 0) {
    add("oidc", id, "reaches AWS without assuming a role (aws-actions/configure-aws-credentials)");
    return;
  }
  const w = all[configure]?.with ?? {};
  if (typeof w["role-to-assume"] !== "string" || w["role-to-assume"] === "") add("oidc", id, "configure-aws-credentials without role-to-assume");
  if (!String(w["role-session-name"] ?? "").includes("github.run_id")) {
    add("oidc", id, "the role session name must carry github.run_id, so CloudTrail leads back to the run");
  }
  if (firstAwsCommand >= 0 && firstAwsCommand < configure) add("oidc", id, "runs an AWS command before the role session exists");
}

function checkSteps(where: string, list: readonly Step[], add: Add): void {
  list.forEach((s, index) => {
    const label = `${where} › ${s.name ?? s.id ?? `step ${index + 1}`}`;
    const ref = s.uses;
    if (ref !== undefined && !ref.startsWith("./")) {
      if (ref.startsWith("docker://")) {
        if (!/@sha256:[0-9a-f]{64}$/.test(ref)) add("pinned-actions", label, `${ref} is not pinned to an image digest`);
      } else if (!PINNED_ACTION.test(ref)) {
        add("pinned-actions", label, `${ref} is not pinned to a full 40-character commit SHA`);
      }
    }
    if (usesAction(s, CHECKOUT) && !isFalse(s.with?.["persist-credentials"])) {
      add("checkout-credentials", label, "actions/checkout needs `persist-credentials: false`");
    }
    if (runText(s).includes("${{")) add("expression-injection", label, "an expression inside run:; pass the value through env:");
    if (usesAction(s, GITHUB_SCRIPT) && String(s.with?.script ?? "").includes("${{")) {
      add("expression-injection", label, "an expression inside a github-script script; pass the value through env:");
    }
  });
}

function checkEnvironmentGate(id: string, job: Job, add: Add): void {
  const environment = environmentOf(job);
  if (changesEnvironment(job)) {
    if (!environment) {
      add("environment-gate", id, "changes an environment without naming its GitHub environment (the release roles trust only environment jobs)");
    } else {
      for (const target of commandTargets(job)) {
        if (target !== environment) add("environment-gate", id, `runs against ${target} inside the ${environment} GitHub environment`);
      }
    }
  }
  if (environment === "prod" && !PROD_TAG_CONDITION.test(job.if ?? "")) {
    add("environment-gate", id, "a prod job must only run for v* tags: if: startsWith(github.ref, 'refs/tags/v')");
  }
  for (const s of steps(job).filter((x) => usesAction(x, CONFIGURE_AWS))) {
    const role = String(s.with?.["role-to-assume"] ?? "");
    if (role === "") continue;
    const m = ROLE_VARIABLE.exec(role);
    if (!m) {
      add("environment-gate", id, `role ${role} is not a ZCP_<ENV>_<KIND>_ROLE_ARN variable; its environment cannot be checked`);
      continue;
    }
    const [, roleEnv = "", kind = ""] = m;
    if (kind === "PREVIEW" && environment) {
      add("environment-gate", id, "a preview role in an environment job: its subject would be environment:ENV, not pull_request");
    }
    if (kind !== "PREVIEW" && environment !== roleEnv.toLowerCase()) {
      add("environment-gate", id, `${kind.toLowerCase()} role of ${roleEnv.toLowerCase()} in a job of environment ${environment ?? "(none)"}`);
    }
  }
}

function checkReleaseConcurrency(id: string, job: Job, add: Add): void {
  if (!changesEnvironment(job)) return;
  const c = job.concurrency;
  if (typeof c !== "object" || c === null) {
    add("release-concurrency", id, "changes an environment without a job-level concurrency group");
    return;
  }
  if (!isFalse(c["cancel-in-progress"])) add("release-concurrency", id, "must say `cancel-in-progress: false`");
  const environment = environmentOf(job);
  if (environment && !new RegExp(`(^|[^a-z0-9])${environment}($|[^a-z0-9])`).test(String(c.group ?? ""))) {
    add("release-concurrency", id, `concurrency group "${String(c.group)}" does not name the environment ${environment}`);
  }
}

// ---------------------------------------------------------------------------------------
// Reading files
// ---------------------------------------------------------------------------------------

function yamlFiles(dir: string): string[] {
  return fs
    .readdirSync(dir)
    .filter((f) => f.endsWith(".yml") || f.endsWith(".yaml"))
    .sort()
    .map((f) => path.join(dir, f));
}

const rel = (file: string) => path.relative(ROOT, file);
const read = (file: string) => fs.readFileSync(file, "utf8");
const loadWorkflow = (name: string) => parseYaml(read(path.join(WORKFLOW_DIR, name))) as Workflow;

function jobsOf(wf: Workflow): [string, Job][] {
  return Object.entries(wf.jobs ?? {});
}

function runsOf(job: Job): string {
  return steps(job).map(runText).join("\n");
}

function stepUsing(job: Job, prefix: string): Step | undefined {
  return steps(job).find((s) => usesAction(s, prefix));
}

// ---------------------------------------------------------------------------------------
// zcp command lines, from workflows and docs
// ---------------------------------------------------------------------------------------

/** Stand-ins for shell variables and documentation placeholders, by flag. */
const SAMPLE_VALUES: Record<string, string> = {
  "--env": "dev",
  "--version": "v1.2.3",
  "--to": "v1.2.2",
  "--source": "examples/app",
  "--canary": "1",
  "--batch": "25%",
  "--from": "dev",
  "--from-bucket": "example-org-web-dev-artifacts",
};

/** The argv of every `zcp …` / `bin/zcp …` / `npx zcp …` invocation in some shell text. */
function zcpInvocations(text: string): string[][] {
  const out: string[][] = [];
  for (const rawLine of text.split("\n")) {
    const line = rawLine.replace(/^\s*\$\s+/, "").replace(/\s+#\s.*$/, "");
    for (const segment of line.split(/;|&&|\|\||\bthen\b|\belse\b/)) {
      const m = /(?:^|\s)(?:\S*\/)?zcp\s+(\S.*)$/.exec(segment.trim());
      if (!m || /^zcp:/.test(segment.trim())) continue;
      const tokens = [...(m[1] ?? "").matchAll(/"([^"]*)"|'([^']*)'|(\S+)/g)].map((t) => t[1] ?? t[2] ?? t[3] ?? "");
      const end = tokens.findIndex((t) => /^(?:\d?>|\||<)/.test(t));
      const argv = end >= 0 ? tokens.slice(0, end) : tokens;
      out.push(argv.map((token, i) => (i > 0 && isPlaceholder(token) ? (SAMPLE_VALUES[argv[i - 1] ?? ""] ?? token) : token)));
    }
  }
  return out;
}

function isPlaceholder(token: string): boolean {
  return /^\$\{?[A-Za-z_][A-Za-z0-9_]*\}?$/.test(token) || /^[A-Z][A-Z_]*$/.test(token);
}

/** Shell lines inside fenced code blocks of a markdown file; usage synopses ([optional]) are skipped. */
function markdownShellLines(markdown: string): string {
  const lines: string[] = [];
  let inFence = false;
  for (const line of markdown.split("\n")) {
    if (/^\s*(```|~~~)/.test(line)) {
      inFence = !inFence;
      continue;
    }
    if (inFence && !line.includes("[")) lines.push(line);
  }
  return lines.join("\n");
}

// ---------------------------------------------------------------------------------------
// The comment job's script, run against a fake GitHub API
// ---------------------------------------------------------------------------------------

interface FakeComment {
  id: number;
  login: string;
  body: string;
}

interface CommentRun {
  created: string[];
  updated: { id: number; body: string }[];
}

type ScriptFunction = (github: unknown, context: unknown, core: unknown) => Promise<unknown>;
const AsyncFunction = Object.getPrototypeOf(async () => undefined).constructor as new (...args: string[]) => ScriptFunction;

async function runCommentScript(script: string, env: Record<string, string>, existing: FakeComment[]): Promise<CommentRun> {
  const result: CommentRun = { created: [], updated: [] };
  const listComments = () => undefined;
  const github = {
    paginate: async (fn: unknown) => {
      expect(fn).to.equal(listComments);
      return existing.map((c) => ({ id: c.id, user: { login: c.login }, body: c.body, html_url: `https://example.test/${c.id}` }));
    },
    rest: {
      issues: {
        listComments,
        updateComment: async (args: { comment_id: number; body: string }) => {
          result.updated.push({ id: args.comment_id, body: args.body });
          return { data: {} };
        },
        createComment: async (args: { body: string }) => {
          result.created.push(args.body);
          return { data: { html_url: "https://example.test/new" } };
        },
      },
    },
  };
  const context = {
    repo: { owner: "example-org", repo: "web" },
    payload: { pull_request: { number: 7, head: { sha: "0123456789abcdef0123456789abcdef01234567" } } },
    serverUrl: "https://github.com",
    runId: 42,
  };
  const core = { info: () => undefined };
  const saved = { ...process.env };
  Object.assign(process.env, env);
  try {
    await new AsyncFunction("github", "context", "core", script)(github, context, core);
  } finally {
    for (const key of Object.keys(env)) {
      if (saved[key] === undefined) delete process.env[key];
      else process.env[key] = saved[key];
    }
  }
  return result;
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

describe("GitHub workflows", function () {
  const workflowFiles = yamlFiles(WORKFLOW_DIR);
  const actionFiles = fs.existsSync(ACTION_DIR)
    ? fs
        .readdirSync(ACTION_DIR)
        .map((d) => path.join(ACTION_DIR, d, "action.yml"))
        .filter((f) => fs.existsSync(f))
    : [];

  it("exist: ci, preview, release and rollback", () => {
    expect(workflowFiles.map((f) => path.basename(f))).to.include.members(["ci.yml", "preview.yml", "release.yml", "rollback.yml"]);
  });

  it("no file under .github names a static AWS credential", () => {
    const files: string[] = [];
    const walk = (dir: string) => {
      for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
        if (e.isDirectory()) walk(path.join(dir, e.name));
        else files.push(path.join(dir, e.name));
      }
    };
    walk(path.join(ROOT, ".github"));
    expect(files.length).to.be.greaterThan(4);
    expect(files.filter((f) => STATIC_AWS_CREDENTIALS.test(read(f))).map(rel)).to.deep.equal([]);
  });

  describe("pass every rule", function () {
    for (const file of workflowFiles) {
      it(rel(file), () => {
        expect(checkWorkflow(rel(file), read(file))).to.deep.equal([]);
      });
    }
    for (const file of actionFiles) {
      it(rel(file), () => {
        expect(checkCompositeAction(rel(file), read(file))).to.deep.equal([]);
      });
    }
  });

  describe("every rule flags the bad fixture written for it", function () {
    const fixtures = yamlFiles(FIXTURE_DIR);
    for (const file of fixtures) {
      const text = read(file);
      const expected = /^#\s*expect:\s*(.+)$/m.exec(text)?.[1]?.split(",").map((r) => r.trim()) ?? [];
      it(`${path.basename(file)} → ${expected.join(", ") || "(no expect line)"}`, () => {
        expect(expected.length, "a fixture names the rules it breaks on an `# expect:` line").to.be.greaterThan(0);
        const flagged = new Set(checkWorkflow(rel(file), text).map((f) => f.rule));
        expect([...flagged].sort()).to.deep.equal([...expected].sort());
      });
    }

    it("covers every rule with at least one fixture", () => {
      const covered = new Set(
        fixtures.flatMap((f) => /^#\s*expect:\s*(.+)$/m.exec(read(f))?.[1]?.split(",").map((r) => r.trim()) ?? []),
      );
      expect([...RULES].filter((r) => !covered.has(r))).to.deep.equal([]);
    });

    it("flags each problem of a fixture, not just the first", () => {
      const text = read(path.join(FIXTURE_DIR, "permissions.yml"));
      const where = checkWorkflow("permissions.yml", text).map((f) => f.where.split(" › ")[1]);
      expect(new Set(where)).to.have.keys(["permissions", "inherits", "writes-contents", "idle-token", "pr-write-without-comment", "comment-runs-code", "read-all"]);
    });
  });

  describe("ci.yml", function () {
    const ci = loadWorkflow("ci.yml");

    it("runs on pull requests and on pushes", () => {
      expect(ci.on).to.have.keys(["pull_request", "push"]);
    });

    it("runs the README's commands: bash scripts/tools.sh, then npm test", () => {
      const [, job] = jobsOf(ci)[0] ?? [];
      expect(job, "the test job").to.not.equal(undefined);
      const runs = steps(job!).map(runText).filter(Boolean);
      const tools = runs.findIndex((r) => r.trim() === "bash scripts/tools.sh");
      const test = runs.findIndex((r) => r.trim() === "npm test");
      expect(tools, "bash scripts/tools.sh").to.be.at.least(0);
      expect(test, "npm test after the tools").to.be.greaterThan(tools);
      expect(touchesAws(job!)).to.equal(false);
    });
  });

  describe("preview.yml", function () {
    const preview = loadWorkflow("preview.yml");
    const jobs = jobsOf(preview);

    it("runs on pull requests only", () => {
      expect(preview.on).to.have.keys(["pull_request"]);
    });

    for (const env of ["dev", "prod"]) {
      it(`previews the ${env} foundation with the ${env} preview role, the S3 backend and pulumi preview --diff`, () => {
        const found = jobs.find(([, job]) => runsOf(job).includes(`pulumi preview --diff --stack ${env}`));
        expect(found, `a job running pulumi preview --diff --stack ${env}`).to.not.equal(undefined);
        const [, job] = found!;
        const configure = stepUsing(job, CONFIGURE_AWS)?.with ?? {};
        expect(configure["role-to-assume"]).to.equal(`\${{ vars.ZCP_${env.toUpperCase()}_PREVIEW_ROLE_ARN }}`);
        expect(configure["aws-region"]).to.equal(`\${{ vars.ZCP_${env.toUpperCase()}_AWS_REGION }}`);
        const login = steps(job).find((s) => /\bpulumi login\b/.test(runText(s)));
        expect(login?.env?.STATE_BACKEND).to.equal(`\${{ vars.ZCP_${env.toUpperCase()}_STATE_BACKEND }}`);
        expect(environmentOf(job), "no environment: the subject stays pull_request").to.equal(undefined);
      });
    }

    it("previews the release to dev with zcp preview", () => {
      const found = jobs.find(([, job]) => /\bzcp preview --env dev\b/.test(runsOf(job)));
      expect(found, "a job running zcp preview --env dev").to.not.equal(undefined);
      expect(stepUsing(found![1], CONFIGURE_AWS)?.with?.["role-to-assume"]).to.equal("${{ vars.ZCP_DEV_PREVIEW_ROLE_ARN }}");
    });

    it("has one commenting job, the only one that may write to the pull request, after every preview", () => {
      const writers = jobs.filter(([, job]) => (job.permissions as Record<string, unknown> | undefined)?.["pull-requests"] === "write");
      expect(writers.map(([id]) => id)).to.have.length(1);
      const [id, job] = writers[0]!;
      expect(commentsOnPullRequests(job)).to.equal(true);
      const previewJobs = jobs.filter(([, j]) => touchesAws(j)).map(([jobId]) => jobId);
      expect(previewJobs).to.have.length(3);
      expect(job.needs, id).to.have.members(previewJobs);
      expect(job.if ?? "").to.match(/\balways\(\)/);
    });

    describe("the comment script", function () {
      const commentJob = jobs.find(([, job]) => commentsOnPullRequests(job))?.[1];
      const script = String(stepUsing(commentJob ?? {}, GITHUB_SCRIPT)?.with?.script ?? "");
      const env: Record<string, string> = {
        FOUNDATION_DEV_RESULT: "success",
        FOUNDATION_DEV_STATUS: "0",
        FOUNDATION_DEV_TEXT: "Previewing update (dev):\n  ~ aws:ec2/launchTemplate:LaunchTemplate update [diff: ~userData]",
        FOUNDATION_PROD_RESULT: "failure",
        FOUNDATION_PROD_STATUS: "255",
        FOUNDATION_PROD_TEXT: "error: a fence in the output ```` must not close the block",
        RELEASE_DEV_RESULT: "skipped",
        RELEASE_DEV_STATUS: "",
        RELEASE_DEV_TEXT: "",
      };

      it("creates the comment, marked and holding every preview, when none exists", async () => {
        const run = await runCommentScript(script, env, [{ id: 1, login: "someone", body: "looks good" }]);
        expect(run.updated).to.deep.equal([]);
        expect(run.created).to.have.length(1);
        const body = run.created[0]!;
        expect(body.startsWith("<!-- zcp-preview -->")).to.equal(true);
        expect(body).to.include("~ aws:ec2/launchTemplate:LaunchTemplate update").and.include("Foundation: prod</b>: failed (exit 255)");
        expect(body).to.include("Release: dev</b>: skipped");
        expect(body, "a fence longer than the output's backtick runs").to.include("`````\nerror: a fence");
      });

      it("updates its own earlier comment in place, and never a person's comment that quotes the marker", async () => {
        const run = await runCommentScript(script, env, [
          { id: 3, login: "someone", body: "<!-- zcp-preview --> copied" },
          { id: 9, login: "github-actions[bot]", body: "<!-- zcp-preview -->\nan older preview" },
        ]);
        expect(run.created).to.deep.equal([]);
        expect(run.updated.map((u) => u.id)).to.deep.equal([9]);
        expect(run.updated[0]!.body).to.include("Previewing update (dev)");
      });
    });
  });

  describe("release.yml", function () {
    const release = loadWorkflow("release.yml");
    const jobs = new Map(jobsOf(release));
    const job = (id: string): Job => {
      const j = jobs.get(id);
      expect(j, `job ${id}`).to.not.equal(undefined);
      return j!;
    };

    it("runs on pushes to main and on v* tags only", () => {
      expect(release.on).to.deep.equal({ push: { branches: ["main"], tags: ["v*"] } });
    });

    it("never cancels a run in progress, one run per environment", () => {
      expect(release.concurrency).to.deep.include({ "cancel-in-progress": false });
      expect(String((release.concurrency as { group?: string }).group)).to.match(/'prod'.*'dev'/);
    });

    it("dev: on main, the foundation's pulumi up, then zcp release of the pushed commit", () => {
      for (const id of ["foundation-dev", "release-dev"]) {
        expect(job(id).if).to.equal("github.ref == 'refs/heads/main'");
        expect(environmentOf(job(id))).to.equal("dev");
      }
      expect(runsOf(job("foundation-dev"))).to.match(/^pulumi up --yes --diff --stack dev\b/m);
      expect(stepUsing(job("foundation-dev"), CONFIGURE_AWS)?.with?.["role-to-assume"]).to.equal("${{ vars.ZCP_DEV_FOUNDATION_ROLE_ARN }}");
      expect(job("release-dev").needs).to.equal("foundation-dev");
      const releaseStep = steps(job("release-dev")).find((s) => /\bzcp release\b/.test(runText(s)));
      expect(releaseStep?.run?.trim()).to.equal('bin/zcp release --env dev --version "$ZCP_VERSION"');
      expect(releaseStep?.env?.ZCP_VERSION).to.equal("${{ github.sha }}");
    });

    it("prod: on v* tags, behind the prod environment, foundation first, then dev's artifact promoted and released canary first", () => {
      for (const id of ["foundation-prod", "release-prod"]) {
        expect(job(id).if).to.equal("startsWith(github.ref, 'refs/tags/v')");
        expect(environmentOf(job(id))).to.equal("prod");
      }
      expect(runsOf(job("foundation-prod"))).to.match(/^pulumi up --yes --diff --stack prod\b/m);
      expect(job("release-prod").needs).to.equal("foundation-prod");
      const all = steps(job("release-prod"));
      const promoteAt = all.findIndex((s) => /\bzcp promote\b/.test(runText(s)));
      const releaseAt = all.findIndex((s) => /\bzcp release\b/.test(runText(s)));
      // The bytes dev released (named by the commit), copied, then released without a rebuild.
      expect(all[promoteAt]?.run?.trim()).to.equal('bin/zcp promote --from dev --to prod --version "$ZCP_VERSION" --from-bucket "$DEV_ARTIFACT_BUCKET"');
      expect(all[promoteAt]?.env?.ZCP_VERSION).to.equal("${{ github.sha }}");
      expect(releaseAt).to.be.greaterThan(promoteAt);
      expect(all[releaseAt]?.run?.trim()).to.equal('bin/zcp release --env prod --version "$ZCP_VERSION" --prebuilt --canary 1');
      expect(all[releaseAt]?.env?.ZCP_VERSION).to.equal("${{ github.sha }}");
      // dev releases the same version name: the commit.
      const devRelease = steps(job("release-dev")).find((s) => /\bzcp release\b/.test(runText(s)));
      expect(devRelease?.env?.ZCP_VERSION).to.equal("${{ github.sha }}");
    });

    it("releases only commits that are on main to prod", () => {
      for (const id of ["foundation-prod", "release-prod"]) {
        expect(stepUsing(job(id), CHECKOUT)?.with?.["fetch-depth"]).to.equal(0);
        expect(runsOf(job(id))).to.include("git merge-base --is-ancestor HEAD origin/main");
      }
    });

    it("gives a release's session the hour an image bake may need, and no job more time than that", () => {
      for (const id of ["release-dev", "release-prod"]) {
        expect(stepUsing(job(id), CONFIGURE_AWS)?.with?.["role-duration-seconds"]).to.equal(3600);
        expect((job(id) as { "timeout-minutes"?: number })["timeout-minutes"]).to.be.at.most(75);
      }
    });
  });

  describe("rollback.yml", function () {
    const rollback = loadWorkflow("rollback.yml");

    it("is started by hand and rolls back dev from main, prod only from a v* tag", () => {
      expect(rollback.on).to.have.keys(["workflow_dispatch"]);
      const jobs = new Map(jobsOf(rollback));
      expect(jobs.get("rollback-dev")?.if).to.include("github.ref == 'refs/heads/main'");
      expect(jobs.get("rollback-prod")?.if).to.match(PROD_TAG_CONDITION);
      expect(runsOf(jobs.get("rollback-prod")!)).to.include('bin/zcp rollback --env prod --to "$ZCP_TO"');
    });
  });

  describe("commands", function () {
    it("every zcp invocation in the workflows is one the CLI accepts", () => {
      const invocations = workflowFiles.flatMap((f) => {
        const wf = parseYaml(read(f)) as Workflow;
        return jobsOf(wf).flatMap(([, job]) => zcpInvocations(runsOf(job)));
      });
      expect(invocations.length).to.be.at.least(6);
      for (const argv of invocations) {
        expect(() => parseArgs(argv), argv.join(" ")).to.not.throw();
      }
    });

    it("the command check itself rejects a flag the CLI does not have", () => {
      const [argv] = zcpInvocations('bin/zcp release --env dev --version "$ZCP_VERSION" --force');
      expect(() => parseArgs(argv!)).to.throw(/--force/);
    });

    it("every zcp command shown in the README and docs/ is one the CLI accepts", () => {
      const docs = [path.join(ROOT, "README.md"), ...fs.readdirSync(path.join(ROOT, "docs")).filter((f) => f.endsWith(".md")).map((f) => path.join(ROOT, "docs", f))];
      let count = 0;
      for (const file of docs) {
        for (const argv of zcpInvocations(markdownShellLines(read(file)))) {
          count++;
          expect(() => parseArgs(argv), `${rel(file)}: zcp ${argv.join(" ")}`).to.not.throw();
        }
      }
      expect(count).to.be.at.least(5);
    });

    it("the workflows install the Pulumi CLI version scripts/tools.sh pins", () => {
      const pinned = /^PULUMI_VERSION="([^"]+)"/m.exec(read(path.join(ROOT, "scripts", "tools.sh")))?.[1];
      expect(pinned).to.match(/^\d+\.\d+\.\d+$/);
      const installs = actionFiles.flatMap((f) =>
        ((parseYaml(read(f)) as CompositeAction).runs?.steps ?? []).filter((s) => usesAction(s, "pulumi/actions@")).map((s) => String(s.with?.["pulumi-version"])),
      );
      expect(installs).to.deep.equal([pinned]);
    });
  });
});
