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
 *   - event values never reach shell or script text except through environment variables;
 *   - no job that holds `id-token: write` installs or builds anything: it unpacks a build made
 *     by a job without it, after checking the sha256 that job recorded (isolated-build);
 *   - every role session lasts `zcp:github.sessionDurationS`, read with `zcp config get` in the
 *     same job before the session exists (session-duration);
 *   - every foundation `pulumi preview` / `pulumi up` runs the CrossGuard policy pack (policy-pack);
 *   - a job with a preview role previews only a throwaway copy of the state that `zcp state copy`
 *     made (a file backend), never the S3 state, whose KMS key the role may not use (preview-copy);
 *   - prod is reached only through the reusable release workflow called at main, which checks
 *     that the commit is on the default branch before any role job runs: a tag's own workflow
 *     files are the tagger's to edit (trusted-ref).
 *
 * Each rule is a checker run against the real workflows (which must pass) and against the bad
 * fixtures in tests/fixtures/workflows/, each of which must be flagged for exactly the rules
 * its `# expect:` line names, so a rule that stops catching anything fails here too.
 * The workflows' zcp commands, and those in the docs, are parsed with the CLI's own parser.
 */
import { expect } from "chai";
import { execFileSync, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parse as parseYaml } from "yaml";
import { parseArgs } from "../../deploy/cli-args.js";
import { findRepoRoot } from "../../deploy/repo.js";
import { parseConfig } from "../../shared/config.js";
import { minimalRawConfig } from "../fixtures/infra/config.js";

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
  /** The inputs of a reusable workflow call. */
  with?: Record<string, unknown>;
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
  "isolated-build",
  "session-duration",
  "policy-pack",
  "preview-copy",
  "trusted-ref",
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
const AWS_COMMAND = /\b(?:zcp\s+(?:release|rollback|preview|status|history|state\s+copy)|pulumi\s+(?:up|preview|refresh|destroy|import|cancel|login|stack|state|config))\b/;
/** Commands that change an environment. */
const CHANGE_COMMAND = /\b(?:zcp\s+(?:release|rollback)|pulumi\s+(?:up|refresh|destroy|import|cancel|state))\b/;
const CONFIGURE_AWS = "aws-actions/configure-aws-credentials@";
const CHECKOUT = "actions/checkout@";
const GITHUB_SCRIPT = "actions/github-script@";
/** Role variables follow `ZCP_<ENV>_<KIND>_ROLE_ARN`, so a role's environment can be checked. */
const ROLE_VARIABLE = /^\$\{\{\s*vars\.ZCP_([A-Z0-9]+)_(RELEASE|FOUNDATION|PREVIEW)_ROLE_ARN\s*\}\}$/;
const PINNED_ACTION = /^[A-Za-z0-9_.-]+\/[A-Za-z0-9_./-]+@[0-9a-f]{40}$/;
const PROD_TAG_CONDITION = /startsWith\(\s*github\.ref\s*,\s*'refs\/tags\/v'\s*\)/;
/** The environment of a reusable workflow's jobs: the caller's input. */
const INPUT_ENVIRONMENT = /^\$\{\{\s*inputs\.environment\s*\}\}$/;
/** A role given to a reusable workflow as an input; the caller's `with:` is checked instead. */
const ROLE_INPUT = /^\$\{\{\s*inputs\.(release|foundation|preview)-role-arn\s*\}\}$/;
/** The reusable release workflow, as the release and rollback workflows call it. */
const RELEASE_WORKFLOW = /(?:^\.\/|^[A-Za-z0-9_.-]+\/[A-Za-z0-9_.-]+\/)\.github\/workflows\/zcp-release\.ya?ml(?:@(.+))?$/;
/** Commands that install dependencies or build: they run code a dependency ships (install scripts, compilers). */
const INSTALL_COMMAND = /\b(?:npm\s+(?:ci|install|i|rebuild|run\s+build)|yarn(?:\s+install)?|pnpm\s+(?:install|i)|pip3?\s+install|bash\s+scripts\/tools\.sh)\b/;
/** Commands that run the project's built code (zcp, the foundation program through pulumi). */
const RUNS_BUILD = /\b(?:zcp\s+\S|pulumi\s+(?:up|preview|refresh|destroy))/;
const SESSION_READ = /\bzcp\s+config\s+get\s+(?:zcp:)?github\.sessionDurationS\b/;
const STEP_OUTPUT = /^\$\{\{\s*steps\.([A-Za-z0-9_-]+)\.outputs\.([A-Za-z0-9_-]+)\s*\}\}$/;
const NEEDS_OUTPUT = /^\$\{\{\s*needs\.[A-Za-z0-9_-]+\.outputs\.[A-Za-z0-9_-]+\s*\}\}$/;
const FOUNDATION_PULUMI = /(?:^|[\s;&|])pulumi\s+(?:preview|up)\s+-/;
const PULUMI_PREVIEW = /(?:^|[\s;&|])pulumi\s+preview\b/;
const STATE_COPY = /\bzcp\s+state\s+copy\b/;
const DEFAULT_BRANCH_CHECK = /\bgit\s+merge-base\s+--is-ancestor\b/;

const steps = (job: Job): Step[] => job.steps ?? [];
const usesAction = (step: Step, prefix: string): boolean => (step.uses ?? "").startsWith(prefix);
const runText = (step: Step): string => (typeof step.run === "string" ? step.run : "");

function environmentOf(job: Job): string | undefined {
  if (job.uses !== undefined) return typeof job.with?.environment === "string" ? job.with.environment : undefined;
  if (typeof job.environment === "string") return job.environment;
  return job.environment?.name;
}

const isReusable = (wf: Workflow): boolean =>
  typeof wf.on === "object" && wf.on !== null && !Array.isArray(wf.on) && "workflow_call" in (wf.on as object);

const holdsIdToken = (job: Job): boolean =>
  typeof job.permissions === "object" && job.permissions !== null && (job.permissions as Record<string, unknown>)["id-token"] === "write";

/** A call of the reusable release workflow, which assumes the environment's roles. */
const callsReleaseWorkflow = (job: Job): boolean => job.uses !== undefined && RELEASE_WORKFLOW.test(job.uses);

function touchesAws(job: Job): boolean {
  return steps(job).some((s) => usesAction(s, CONFIGURE_AWS) || AWS_COMMAND.test(runText(s)));
}

function changesEnvironment(job: Job): boolean {
  return callsReleaseWorkflow(job) || steps(job).some((s) => CHANGE_COMMAND.test(runText(s)));
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
    checkIsolatedBuild(id, job, add);
    checkSessionDuration(id, job, add);
    checkPolicyPack(id, job, add);
    checkPreviewCopy(id, job, add);
    checkTrustedRefCaller(id, job, add);
    if (job.secrets !== undefined) add("stored-secrets", id, "passes secrets to a reusable workflow");
  }
  if (isReusable(wf)) checkDefaultBranchGate(wf, add);
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
  // A called release workflow's jobs get at most what its caller grants.
  const aws = touchesAws(job) || callsReleaseWorkflow(job);
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
  // A reusable workflow's roles are its caller's inputs (checked at the caller, below).
  const inputsEnvironment = environment !== undefined && INPUT_ENVIRONMENT.test(environment);
  const roles = [
    ...steps(job)
      .filter((x) => usesAction(x, CONFIGURE_AWS))
      .map((x) => ({ role: String(x.with?.["role-to-assume"] ?? ""), kind: undefined as string | undefined })),
    ...Object.entries(job.uses !== undefined ? (job.with ?? {}) : {})
      .filter(([name]) => /-role-arn$/.test(name))
      .map(([name, value]) => ({ role: String(value), kind: name.replace(/-role-arn$/, "").toUpperCase() })),
  ];
  for (const { role, kind: inputKind } of roles) {
    if (role === "") continue;
    if (inputsEnvironment && ROLE_INPUT.test(role)) continue;
    const m = ROLE_VARIABLE.exec(role);
    if (!m) {
      add("environment-gate", id, `role ${role} is not a ZCP_<ENV>_<KIND>_ROLE_ARN variable; its environment cannot be checked`);
      continue;
    }
    const [, roleEnv = "", kind = ""] = m;
    if (inputKind !== undefined && inputKind !== kind) add("environment-gate", id, `${inputKind.toLowerCase()}-role-arn is given the ${kind.toLowerCase()} role`);
    // Previews name no environment (subject pull_request), or one of their own that needs
    // approval, ENV-preview (zcp:github.previewEnvironment), never the environment releases use.
    if (kind === "PREVIEW" && environment && environment !== `${roleEnv.toLowerCase()}-preview`) {
      add("environment-gate", id, `a preview role in the ${environment} environment: previews run in no environment or in ${roleEnv.toLowerCase()}-preview`);
      continue;
    }
    if (kind === "PREVIEW") continue;
    if (kind !== "PREVIEW" && environment !== roleEnv.toLowerCase()) {
      add("environment-gate", id, `${kind.toLowerCase()} role of ${roleEnv.toLowerCase()} in a job of environment ${environment ?? "(none)"}`);
    }
  }
}

function checkReleaseConcurrency(id: string, job: Job, add: Add): void {
  // A called workflow's jobs declare their own groups (checked in that file).
  if (!changesEnvironment(job) || job.uses !== undefined) return;
  const c = job.concurrency;
  if (typeof c !== "object" || c === null) {
    add("release-concurrency", id, "changes an environment without a job-level concurrency group");
    return;
  }
  if (!isFalse(c["cancel-in-progress"])) add("release-concurrency", id, "must say `cancel-in-progress: false`");
  const environment = environmentOf(job);
  if (environment && INPUT_ENVIRONMENT.test(environment)) {
    if (!/\$\{\{\s*inputs\.environment\s*\}\}/.test(String(c.group ?? ""))) {
      add("release-concurrency", id, `concurrency group "${String(c.group)}" does not name the environment (\${{ inputs.environment }})`);
    }
  } else if (environment && !new RegExp(`(^|[^a-z0-9])${environment}($|[^a-z0-9])`).test(String(c.group ?? ""))) {
    add("release-concurrency", id, `concurrency group "${String(c.group)}" does not name the environment ${environment}`);
  }
}

/**
 * isolated-build: a job holding `id-token: write` installs and builds nothing, and runs the
 * project's code only from a build another job made, unpacked after checking the sha256 that
 * job recorded as an output. Install scripts of a poisoned dependency then never run where a
 * token can be requested.
 */
function checkIsolatedBuild(id: string, job: Job, add: Add): void {
  if (!holdsIdToken(job) || job.uses !== undefined) return;
  const all = steps(job);
  for (const s of all) {
    const install = INSTALL_COMMAND.exec(runText(s));
    if (install) add("isolated-build", `${id} › ${s.name ?? "step"}`, `runs \`${install[0]}\` in a job that can request an OIDC token; build in a job without id-token: write`);
    if ((s.uses ?? "") === "./.github/actions/prerequisites" && String(s.with?.["runtime-only"] ?? "false") !== "true") {
      add("isolated-build", `${id} › ${s.name ?? "step"}`, "installs the full prerequisites (and their install scripts) next to id-token: write; use runtime-only");
    }
  }
  const runsAt = all.findIndex((s) => RUNS_BUILD.test(runText(s)));
  if (runsAt < 0) return;
  const verifiedAt = all.findIndex(
    (s) =>
      ((s.uses ?? "") === "./.github/actions/verified-build" && NEEDS_OUTPUT.test(String(s.with?.sha256 ?? ""))) ||
      (/\bsha256sum\s+--check\b/.test(runText(s)) && Object.values(s.env ?? {}).some((v) => NEEDS_OUTPUT.test(String(v)))),
  );
  if (verifiedAt < 0 || verifiedAt > runsAt) {
    add("isolated-build", id, "runs the project's code without first unpacking a build whose sha256 the building job recorded (needs.JOB.outputs)");
  }
}

/** session-duration: each role session lasts what `zcp config get github.sessionDurationS` read in this job. */
function checkSessionDuration(id: string, job: Job, add: Add): void {
  const all = steps(job);
  all.forEach((s, index) => {
    if (!usesAction(s, CONFIGURE_AWS)) return;
    const label = `${id} › ${s.name ?? `step ${index + 1}`}`;
    const duration = String(s.with?.["role-duration-seconds"] ?? "");
    const m = STEP_OUTPUT.exec(duration);
    const source = m ? all.slice(0, index).find((x) => x.id === m[1]) : undefined;
    if (!source || !SESSION_READ.test(runText(source))) {
      add("session-duration", label, `role-duration-seconds must be the output of an earlier step running \`zcp config get github.sessionDurationS\`, got ${JSON.stringify(duration || null)}`);
    }
  });
}

/** policy-pack: every foundation preview and update runs the CrossGuard policy pack. */
function checkPolicyPack(id: string, job: Job, add: Add): void {
  steps(job).forEach((s, index) => {
    for (const line of runText(s).split("\n")) {
      if (FOUNDATION_PULUMI.test(line) && !/\s--policy-pack[=\s]+\S/.test(line)) {
        add("policy-pack", `${id} › ${s.name ?? `step ${index + 1}`}`, `\`${line.trim()}\` runs without --policy-pack`);
      }
    }
  });
}

/** The kind of role a job assumes (RELEASE, FOUNDATION, PREVIEW), from its role variable or input. */
function roleKinds(job: Job): string[] {
  return steps(job)
    .filter((s) => usesAction(s, CONFIGURE_AWS))
    .map((s) => {
      const role = String(s.with?.["role-to-assume"] ?? "");
      return ROLE_VARIABLE.exec(role)?.[2] ?? ROLE_INPUT.exec(role)?.[1]?.toUpperCase() ?? "";
    });
}

/**
 * preview-copy: a preview role may not use the state's KMS key, and loading the S3 state
 * decrypts its data key; so every `pulumi preview` of such a job runs with PULUMI_BACKEND_URL
 * set to a `file://` copy, made by an earlier `zcp state copy` step.
 */
function checkPreviewCopy(id: string, job: Job, add: Add): void {
  if (!roleKinds(job).includes("PREVIEW")) return;
  const all = steps(job);
  all.forEach((s, index) => {
    if (!PULUMI_PREVIEW.test(runText(s))) return;
    const label = `${id} › ${s.name ?? `step ${index + 1}`}`;
    const backend = String(s.env?.PULUMI_BACKEND_URL ?? "");
    if (!backend.startsWith("file://")) {
      add("preview-copy", label, `pulumi preview with a preview role must run on a copy of the state: set PULUMI_BACKEND_URL to the file:// backend of \`zcp state copy\`, got ${JSON.stringify(backend || null)}`);
    }
    if (!all.slice(0, index).some((earlier) => STATE_COPY.test(runText(earlier)))) {
      add("preview-copy", label, "pulumi preview with a preview role needs an earlier step that runs `zcp state copy`");
    }
  });
}

/**
 * trusted-ref, caller side: prod is reached only by calling the reusable release workflow at
 * main. Steps of this file, or a local call (`./…`, which runs the file as the triggering
 * ref has it), would run whatever a tag's copy says.
 */
function checkTrustedRefCaller(id: string, job: Job, add: Add): void {
  if (environmentOf(job) !== "prod") return;
  if (job.uses === undefined) {
    add("trusted-ref", id, "prod runs steps of this file, which a tag can change; call the reusable release workflow at main");
    return;
  }
  const ref = RELEASE_WORKFLOW.exec(job.uses)?.[1];
  if (job.uses.startsWith("./") || (ref !== "main" && ref !== "refs/heads/main")) {
    add("trusted-ref", id, `${job.uses}: call OWNER/REPO/.github/workflows/zcp-release.yml@main, the ref the prod role trusts`);
  }
}

/**
 * trusted-ref, called side: a reusable workflow whose jobs assume roles first checks, in a job
 * every one of them needs, that the commit is on the default branch, unconditionally.
 */
function checkDefaultBranchGate(wf: Workflow, add: Add): void {
  const jobs = wf.jobs ?? {};
  const gates = Object.entries(jobs)
    .filter(([, job]) => job.if === undefined && steps(job).some((s) => s.if === undefined && DEFAULT_BRANCH_CHECK.test(runText(s))))
    .map(([id]) => id);
  const needsOf = (job: Job): string[] => (job.needs === undefined ? [] : Array.isArray(job.needs) ? job.needs : [job.needs]);
  const reaches = (id: string, seen = new Set<string>()): Set<string> => {
    for (const n of needsOf(jobs[id] ?? {})) {
      if (!seen.has(n)) {
        seen.add(n);
        reaches(n, seen);
      }
    }
    return seen;
  };
  for (const [id, job] of Object.entries(jobs)) {
    if (!holdsIdToken(job)) continue;
    const upstream = reaches(id);
    if (!gates.some((g) => upstream.has(g))) {
      add("trusted-ref", id, "assumes a role without needing a job that checks, unconditionally, that the commit is on the default branch");
    }
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
    const line = rawLine.replace(/^\s*#.*$/, "").replace(/^\s*\$\s+/, "").replace(/\s+#\s.*$/, "");
    for (const rawSegment of line.split(/;|&&|\|\||\bthen\b|\belse\b/)) {
      // `value="$(zcp config get …)"`: the command is what the substitution runs.
      const segment = /\$\(([^)]*)\)/.exec(rawSegment)?.[1] ?? rawSegment;
      const m = /(?:^|\s)(?:\S*\/)?zcp\s+(\S.*)$/.exec(segment.trim());
      if (!m || /^zcp:/.test(segment.trim())) continue;
      // A trailing "$@" passes flags assembled with `set --` just above; each is checked where it is set.
      const tokens = [...(m[1] ?? "").matchAll(/"([^"]*)"|'([^']*)'|(\S+)/g)].map((t) => t[1] ?? t[2] ?? t[3] ?? "").filter((t) => t !== "$@");
      const end = tokens.findIndex((t) => /^(?:\d?>|\||<)/.test(t));
      const argv = end >= 0 ? tokens.slice(0, end) : tokens;
      // promote's --to names an environment, rollback's a version.
      const sample = (flag: string) => (argv[0] === "promote" && flag === "--to" ? "prod" : SAMPLE_VALUES[flag]);
      out.push(argv.map((token, i) => (i > 0 && isPlaceholder(token) ? (sample(argv[i - 1] ?? "") ?? token) : token)));
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

    for (const [fixture, rule] of [
      ["isolated-build.yml", "isolated-build"],
      ["session-duration.yml", "session-duration"],
      ["policy-pack.yml", "policy-pack"],
      ["preview-copy.yml", "preview-copy"],
      ["trusted-ref.yml", "trusted-ref"],
      ["trusted-ref-reusable.yml", "trusted-ref"],
    ] as const) {
      it(`${fixture}: every job is flagged by ${rule}, not just the first`, () => {
        const text = read(path.join(FIXTURE_DIR, fixture));
        const wf = parseYaml(text) as Workflow;
        const flagged = new Set(checkWorkflow(fixture, text).filter((f) => f.rule === rule).map((f) => f.where.split(" › ")[1]));
        const expected = Object.keys(wf.jobs ?? {}).filter((id) => id !== "build");
        expect([...flagged].sort()).to.deep.equal(expected.sort());
      });
    }

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
        expect(runsOf(job)).to.include(`pulumi preview --diff --stack ${env} --policy-pack policy`);
        // The preview reads a copy of the state that decrypts nothing, made after the login.
        const all = steps(job);
        const loginAt = all.findIndex((s) => /\bpulumi login\b/.test(runText(s)));
        const copyAt = all.findIndex((s) => runText(s) === `bin/zcp state copy --env ${env} --to "$RUNNER_TEMP/foundation-copy"`);
        const previewAt = all.findIndex((s) => runText(s).includes(`pulumi preview --diff --stack ${env}`));
        expect(copyAt, "zcp state copy after pulumi login").to.be.greaterThan(loginAt);
        expect(previewAt, "the preview after zcp state copy").to.be.greaterThan(copyAt);
        const previewStep = all[previewAt]!;
        expect(previewStep.env?.PULUMI_BACKEND_URL).to.equal("file://${{ runner.temp }}/foundation-copy/backend");
        expect(previewStep.env?.PULUMI_CONFIG_PASSPHRASE_FILE).to.equal("${{ runner.temp }}/foundation-copy/passphrase");
        expect(runText(previewStep)).to.include(`--config-file "$RUNNER_TEMP/foundation-copy/Pulumi.${env}.yaml"`);
        if (env === "dev") {
          expect(environmentOf(job), "no environment: the subject stays pull_request").to.equal(undefined);
        } else {
          // Pull-request code reaches prod's account only after a reviewer of prod-preview approved.
          expect(environmentOf(job), "prod's preview waits for approval").to.equal("prod-preview");
        }
      });
    }

    it("builds once, in a job without id-token, and every preview job needs that build and verifies it", () => {
      const builders = jobs.filter(([, job]) => steps(job).some((s) => usesAction(s, "actions/upload-artifact@")));
      expect(builders.map(([id]) => id)).to.deep.equal(["build"]);
      const [, build] = builders[0]!;
      expect(holdsIdToken(build)).to.equal(false);
      expect(runsOf(build)).to.match(/^npm ci --ignore-scripts\b/m);
      for (const [id, job] of jobs.filter(([, j]) => touchesAws(j))) {
        expect(job.needs, id).to.equal("build");
        expect(stepUsing(job, "./.github/actions/verified-build")?.with?.sha256, id).to.equal("${{ needs.build.outputs.sha256 }}");
      }
    });

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

    it("is one call of the reusable release workflow per environment, with no steps of its own", () => {
      expect([...jobs.keys()]).to.deep.equal(["dev", "prod"]);
      for (const [id, j] of jobs) {
        expect(j.uses, id).to.match(RELEASE_WORKFLOW);
        expect(j.steps, id).to.equal(undefined);
      }
    });

    it("dev: on main, the foundation with the policy pack, then a release of the pushed commit", () => {
      expect(job("dev").if).to.equal("github.ref == 'refs/heads/main'");
      expect(job("dev").with).to.deep.include({
        environment: "dev",
        version: "${{ github.sha }}",
        foundation: true,
        "policy-pack": "policy",
        "foundation-role-arn": "${{ vars.ZCP_DEV_FOUNDATION_ROLE_ARN }}",
        "release-role-arn": "${{ vars.ZCP_DEV_RELEASE_ROLE_ARN }}",
      });
    });

    it("prod: on v* tags, the release workflow as main has it; foundation, then dev's artifact of the commit promoted and released canary first", () => {
      expect(job("prod").if).to.equal("startsWith(github.ref, 'refs/tags/v')");
      expect(job("prod").uses).to.match(/^[^./][^/]*\/[^/]+\/\.github\/workflows\/zcp-release\.yml@main$/);
      expect(job("prod").with).to.deep.include({
        environment: "prod",
        version: "${{ github.sha }}",
        "promote-from": "dev",
        "promote-from-bucket": "${{ vars.ZCP_DEV_ARTIFACT_BUCKET }}",
        canary: "1",
        foundation: true,
        "policy-pack": "policy",
        "release-role-arn": "${{ vars.ZCP_PROD_RELEASE_ROLE_ARN }}",
      });
    });
  });

  describe("zcp-release.yml (the reusable release workflow)", function () {
    const wf = loadWorkflow("zcp-release.yml");
    const jobs = new Map(jobsOf(wf));
    const build = jobs.get("build") ?? {};
    const roleJobs = jobsOf(wf).filter(([, j]) => holdsIdToken(j));
    const stepNamed = (j: Job, pattern: RegExp): Step => {
      const found = steps(j).find((s) => pattern.test(s.name ?? ""));
      expect(found, String(pattern)).to.not.equal(undefined);
      return found!;
    };

    it("is called with workflow_call, taking environment, version and source", () => {
      const inputs = ((wf.on as { workflow_call?: { inputs?: Record<string, unknown> } }).workflow_call?.inputs ?? {}) as Record<string, { required?: boolean }>;
      expect(inputs).to.include.keys(["environment", "version", "source", "prebuilt", "promote-from", "canary", "foundation", "policy-pack", "command"]);
      expect(inputs.environment?.required).to.equal(true);
    });

    it("builds in a job without id-token, with npm ci --ignore-scripts, and records the sha256 of what it uploads", () => {
      expect(holdsIdToken(build)).to.equal(false);
      expect(runsOf(build)).to.match(/^npm ci --ignore-scripts\b/m);
      expect((build as { outputs?: Record<string, string> }).outputs?.sha256).to.equal("${{ steps.pack.outputs.sha256 }}");
      expect(roleJobs.map(([id]) => id)).to.have.members(["foundation", "release"]);
      for (const [id, j] of roleJobs) {
        const verify = stepNamed(j, /sha256/);
        expect(verify.env?.BUILD_SHA256, id).to.equal("${{ needs.build.outputs.sha256 }}");
        expect([j.needs].flat(), id).to.include("build");
      }
    });

    it("runs pulumi up of the foundation with the policy pack, and the release after a successful or skipped foundation only", () => {
      expect(runsOf(jobs.get("foundation")!)).to.include('pulumi up --yes --diff --stack "$ZCP_ENVIRONMENT" --policy-pack "$POLICY_PACK"');
      expect(jobs.get("release")?.if).to.include("!cancelled()").and.include("needs.foundation.result == 'skipped'");
    });

    it("promotes before it releases, and releases a promoted artifact --prebuilt", () => {
      const all = steps(jobs.get("release")!);
      const promoteAt = all.findIndex((s) => /\bzcp promote\b/.test(runText(s)));
      const releaseAt = all.findIndex((s) => /\bzcp release\b/.test(runText(s)));
      expect(promoteAt).to.be.greaterThan(0);
      expect(releaseAt).to.be.greaterThan(promoteAt);
      expect(all[releaseAt]?.env?.ZCP_PREBUILT).to.equal("${{ inputs.prebuilt || inputs.promote-from != '' }}");
    });

    it("gives no role job more time than the default session can last", () => {
      const defaultSessionS = parseConfig(minimalRawConfig(), { stack: "dev" }).github.sessionDurationS;
      for (const [id, j] of roleJobs) expect((j as { "timeout-minutes"?: number })["timeout-minutes"], id).to.be.at.most(defaultSessionS / 60);
    });

    it("hands the session's expiry to every zcp release and rollback, so the runner can refuse a release that would outlive it", () => {
      for (const [id, j] of roleJobs) {
        const zcpSteps = steps(j).filter((s) => /\bzcp (release|rollback)\b/.test(runText(s)));
        if (zcpSteps.length === 0) continue;
        const creds = steps(j).find((s) => String(s.uses ?? "").startsWith("aws-actions/configure-aws-credentials@"));
        expect(creds?.id, `${id}: the credentials step needs an id`).to.be.a("string");
        // configure-aws-credentials sets aws-expiration only with output-credentials.
        expect((creds?.with as Record<string, unknown> | undefined)?.["output-credentials"], id).to.equal(true);
        for (const s of zcpSteps) expect(s.env?.AWS_CREDENTIAL_EXPIRATION, `${id}: ${s.name ?? ""}`).to.equal(`\${{ steps.${creds?.id ?? ""}.outputs.aws-expiration }}`);
      }
    });

    describe("its checks, run as the runner would run them", function () {
      const scratch = fs.mkdtempSync(path.join(os.tmpdir(), "zcp-wf-"));
      const git = (...args: string[]) => execFileSync("git", ["-C", scratch, ...args], { encoding: "utf8", env: { ...process.env, GIT_AUTHOR_NAME: "t", GIT_AUTHOR_EMAIL: "t@example.test", GIT_COMMITTER_NAME: "t", GIT_COMMITTER_EMAIL: "t@example.test" } }).trim();
      let onMain = "";
      let offMain = "";
      before(() => {
        git("init", "-q", "-b", "main");
        git("commit", "-q", "--allow-empty", "-m", "on main");
        onMain = git("rev-parse", "HEAD");
        git("checkout", "-q", "-b", "side");
        git("commit", "-q", "--allow-empty", "-m", "only on a side branch");
        offMain = git("rev-parse", "HEAD");
        // What actions/checkout with fetch-depth 0 leaves: the default branch as a remote ref.
        git("update-ref", "refs/remotes/origin/main", onMain);
      });
      after(() => fs.rmSync(scratch, { recursive: true, force: true }));
      const runStep = (step: Step, env: Record<string, string>) =>
        spawnSync("bash", ["-e", "-c", runText(step)], { cwd: scratch, encoding: "utf8", env: { PATH: process.env.PATH ?? "", ...env } });

      it("refuses a commit that is not on the default branch (a tag on a side branch), unconditionally", () => {
        const check = stepNamed(build, /default branch/);
        expect(check.if, "the check cannot be skipped").to.equal(undefined);
        expect(check.env?.DEFAULT_BRANCH).to.equal("${{ github.event.repository.default_branch }}");
        const off = runStep(check, { GITHUB_SHA: offMain, GITHUB_REF: "refs/tags/v9.9.9", DEFAULT_BRANCH: "main" });
        expect(off.status, off.stderr).to.equal(1);
        expect(off.stdout).to.include("is not on the default branch main");
        const on = runStep(check, { GITHUB_SHA: onMain, GITHUB_REF: "refs/tags/v1.0.0", DEFAULT_BRANCH: "main" });
        expect(on.status, on.stderr + on.stdout).to.equal(0);
        const unknown = runStep(check, { GITHUB_SHA: onMain, GITHUB_REF: "refs/tags/v1.0.0", DEFAULT_BRANCH: "" });
        expect(unknown.status).to.equal(1);
      });

      it("refuses a version that names neither the commit nor the tag", () => {
        const check = stepNamed(build, /version names this commit/);
        const base = { GITHUB_SHA: onMain, GITHUB_REF_NAME: "v1.0.0" };
        expect(runStep(check, { ...base, ZCP_VERSION: onMain }).status).to.equal(0);
        expect(runStep(check, { ...base, ZCP_VERSION: "v1.0.0" }).status).to.equal(0);
        const other = runStep(check, { ...base, ZCP_VERSION: offMain });
        expect(other.status).to.equal(1);
        expect(other.stdout).to.include("must be the commit SHA");
      });

      it("the role jobs refuse a build whose sha256 differs from the build job's output", () => {
        const verify = stepNamed(jobs.get("release")!, /sha256/);
        const temp = path.join(scratch, "runner-temp");
        fs.mkdirSync(path.join(temp, "zcp-build"), { recursive: true });
        fs.mkdirSync(path.join(scratch, "pkg", "dist"), { recursive: true });
        fs.writeFileSync(path.join(scratch, "pkg", "dist", "marker.js"), "built\n");
        execFileSync("tar", ["-czf", path.join(temp, "zcp-build", "zcp-build.tar.gz"), "-C", path.join(scratch, "pkg"), "dist"]);
        const good = execFileSync("sha256sum", [path.join(temp, "zcp-build", "zcp-build.tar.gz")], { encoding: "utf8" }).split(" ")[0]!;
        const swapped = runStep(verify, { RUNNER_TEMP: temp, BUILD_SHA256: "0".repeat(64) });
        expect(swapped.status).to.not.equal(0);
        expect(fs.existsSync(path.join(scratch, "dist")), "nothing unpacked").to.equal(false);
        const empty = runStep(verify, { RUNNER_TEMP: temp, BUILD_SHA256: "" });
        expect(empty.status).to.not.equal(0);
        const ok = runStep(verify, { RUNNER_TEMP: temp, BUILD_SHA256: good });
        expect(ok.status, ok.stderr).to.equal(0);
        expect(fs.readFileSync(path.join(scratch, "dist", "marker.js"), "utf8")).to.equal("built\n");
      });
    });
  });

  describe("rollback.yml", function () {
    const rollback = loadWorkflow("rollback.yml");

    it("is started by hand and rolls back dev from main, prod only from a v* tag, through the release workflow", () => {
      expect(rollback.on).to.have.keys(["workflow_dispatch"]);
      const jobs = new Map(jobsOf(rollback));
      expect(jobs.get("rollback-dev")?.if).to.include("github.ref == 'refs/heads/main'");
      expect(jobs.get("rollback-prod")?.if).to.match(PROD_TAG_CONDITION);
      for (const id of ["rollback-dev", "rollback-prod"]) {
        expect(jobs.get(id)?.uses, id).to.match(RELEASE_WORKFLOW);
        expect(jobs.get(id)?.with, id).to.deep.include({ command: "rollback", version: "${{ inputs.to }}" });
      }
      expect(jobs.get("rollback-prod")?.uses).to.match(/@main$/);
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
      const pulumiVersions = (list: readonly Step[]) => list.filter((s) => usesAction(s, "pulumi/actions@")).map((s) => String(s.with?.["pulumi-version"]));
      const inActions = actionFiles.flatMap((f) => pulumiVersions((parseYaml(read(f)) as CompositeAction).runs?.steps ?? []));
      // The reusable release workflow installs it itself (its callers may be other repositories).
      const inWorkflows = workflowFiles.flatMap((f) => jobsOf(parseYaml(read(f)) as Workflow).flatMap(([, job]) => pulumiVersions(steps(job))));
      expect(inActions).to.deep.equal([pinned]);
      expect(inWorkflows.length).to.be.greaterThan(0);
      expect(new Set(inWorkflows)).to.deep.equal(new Set([pinned]));
    });
  });
});
