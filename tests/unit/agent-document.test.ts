import { spawnSync } from "node:child_process";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as zlib from "node:zlib";
import { expect } from "chai";
import {
  ACTION_PARAMETER,
  AGENT_SCRIPT_PATH,
  DEPLOY_PARAMETERS,
  EXECUTION_TIMEOUT_PARAMETER,
  MAX_DOCUMENT_BYTES,
  buildDeployDocument,
  readAgentScript,
  repoRoot,
  sendCommandParameters,
  sha256Hex,
} from "../../shared/agent/document.js";
import { ConfigError } from "../../shared/errors.js";
import { HOSTILE_VALUES, RELEASE_ENV, stubAgentScript } from "../fixtures/infra/agent.js";

const AGENT_ENV_NAMES = Object.keys(RELEASE_ENV).sort();
/** The order in which the stub agent prints the variables it got. */
const STUB_PRINT_ORDER = Object.keys(RELEASE_ENV) as (keyof typeof RELEASE_ENV)[];

/** The here-document between `base64 -d … <<'END'` and `END`, decoded and gunzipped. */
function embeddedScript(runCommand: readonly string[]): string {
  const start = runCommand.findIndex((l) => l.startsWith("base64 -d"));
  const terminator = /<<'(\w+)'$/.exec(runCommand[start] ?? "")?.[1];
  const end = runCommand.indexOf(terminator ?? "", start + 1);
  expect(start, "base64 here-document").to.be.greaterThan(-1);
  expect(end, "here-document terminator").to.be.greaterThan(start);
  return zlib.gunzipSync(Buffer.from(runCommand.slice(start + 1, end).join(""), "base64")).toString("utf8");
}

function tempDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** Runs the document's command the way SSM does: the lines as one script, with `sh`. */
function runDocument(runCommand: readonly string[], env: Record<string, string>) {
  const dir = tempDir("zcp-doc-");
  const tmp = path.join(dir, "tmp");
  fs.mkdirSync(tmp);
  fs.writeFileSync(path.join(dir, "_script.sh"), `${runCommand.join("\n")}\n`);
  const result = spawnSync("sh", ["_script.sh"], {
    cwd: dir,
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", TMPDIR: tmp, ...env },
    encoding: "utf8",
  });
  const leftovers = fs.readdirSync(tmp);
  const files = fs.readdirSync(dir);
  fs.rmSync(dir, { recursive: true, force: true });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr, leftovers, files };
}

function ssmEnv(values: Record<string, string>): Record<string, string> {
  const env: Record<string, string> = {};
  for (const p of DEPLOY_PARAMETERS) {
    const value = values[p.env];
    if (value !== undefined) env[`SSM_${p.name}`] = value;
  }
  return env;
}

describe("deploy document content (shared/agent/document.ts)", () => {
  const script = stubAgentScript();
  const doc = buildDeployDocument({ script });
  const runCommand = doc.mainSteps[0].inputs.runCommand;

  it("is a schema 2.2 Command document with one Linux shell step", () => {
    expect(doc.schemaVersion).to.equal("2.2");
    expect(doc.mainSteps).to.have.length(1);
    expect(doc.mainSteps[0]).to.deep.include({ action: "aws:runShellScript", precondition: { StringEquals: ["platformType", "Linux"] } });
    expect(doc.description).to.contain(sha256Hex(script));
  });

  it("declares one parameter per agent variable, each with an allowedPattern and ENV_VAR interpolation", () => {
    expect(DEPLOY_PARAMETERS.map((p) => p.env).sort()).to.deep.equal(AGENT_ENV_NAMES);
    expect(Object.keys(doc.parameters).sort()).to.deep.equal([...DEPLOY_PARAMETERS.map((p) => p.name), ACTION_PARAMETER, EXECUTION_TIMEOUT_PARAMETER].sort());
    for (const p of DEPLOY_PARAMETERS) {
      const declared = doc.parameters[p.name]!;
      expect(declared.type).to.equal("String");
      expect(declared.interpolationType).to.equal("ENV_VAR");
      expect(declared.allowedPattern).to.equal(p.allowedPattern).and.match(/^\^.*\$$/);
    }
  });

  it("sets the run's execution timeout from its executionTimeout parameter, defaulted from config, never in the script", () => {
    const step = doc.mainSteps[0];
    expect(step.inputs.timeoutSeconds).to.equal(`{{ ${EXECUTION_TIMEOUT_PARAMETER} }}`);
    expect(doc.parameters[EXECUTION_TIMEOUT_PARAMETER]).to.include({ type: "String", default: "3600" });
    expect(doc.parameters[EXECUTION_TIMEOUT_PARAMETER]?.interpolationType).to.equal(undefined);
    const pattern = new RegExp(doc.parameters[EXECUTION_TIMEOUT_PARAMETER]?.allowedPattern ?? "");
    expect(["30", "600", "7200", "172800"].every((v) => pattern.test(v))).to.equal(true);
    expect(["29", "172801", "60; reboot", "1e3"].some((v) => pattern.test(v))).to.equal(false);
    expect(buildDeployDocument({ script: "#!/bin/bash\n", executionTimeoutS: 900 }).parameters[EXECUTION_TIMEOUT_PARAMETER]?.default).to.equal("900");
    expect(() => buildDeployDocument({ script: "#!/bin/bash\n", executionTimeoutS: 5 })).to.throw(/^zcp:deploy.commandTimeoutS: must be 30\.\.172800 seconds, got 5/);
  });

  it("never interpolates a parameter into the script text", () => {
    expect(JSON.stringify(step0RunCommand(doc))).to.not.contain("{{");
    for (const p of DEPLOY_PARAMETERS) {
      const uses = runCommand.filter((l) => new RegExp(`SSM_${p.name}\\b`).test(l));
      // Only the presence check and the quoted assignment to its ZCP_* variable read it.
      expect(uses.map((l) => l.trim())).to.deep.equal([
        `[ -n "\${SSM_${p.name}+x}" ] || zcp_missing="$zcp_missing ${p.name}"`,
        `${p.env}="$SSM_${p.name}" \\`,
      ]);
    }
  });

  it("embeds the agent script unchanged, as base64", () => {
    expect(embeddedScript(runCommand)).to.equal(script);
    expect(runCommand.join("\n")).to.contain(sha256Hex(script));
  });

  it("is valid sh", () => {
    const dir = tempDir("zcp-doc-");
    const file = path.join(dir, "_script.sh");
    fs.writeFileSync(file, runCommand.join("\n"));
    const result = spawnSync("sh", ["-n", file], { encoding: "utf8" });
    fs.rmSync(dir, { recursive: true, force: true });
    expect(result.status, result.stderr).to.equal(0);
  });

  it("runs the agent with bash, mapping every SSM_* parameter to its ZCP_* variable, and returns its exit code", () => {
    const run = runDocument(runCommand, { ...ssmEnv(RELEASE_ENV), ZCP_STUB_EXIT: "3" });
    expect(run.status, run.stderr).to.equal(3);
    const seen = run.stdout.split("\n").filter((l) => l.startsWith("ZCP_"));
    expect(seen).to.deep.equal(STUB_PRINT_ORDER.map((name) => `${name}=${RELEASE_ENV[name]}`));
    expect(run.stdout.trim().split("\n").pop()).to.equal('{"status":"deployed","version":"v1.4.2","previous":null,"duration_ms":1}');
    expect(run.leftovers, "temp agent removed").to.deep.equal([]);
  });

  it("passes a value with shell syntax through as inert text", () => {
    const hostile = "http://127.0.0.1/$(touch pwned)`touch pwned2`";
    const run = runDocument(runCommand, { ...ssmEnv({ ...RELEASE_ENV, ZCP_HEALTH_URL: hostile }) });
    expect(run.status, run.stderr).to.equal(0);
    expect(run.stdout).to.contain(`ZCP_HEALTH_URL=${hostile}\n`);
    expect(run.files).to.not.include("pwned").and.not.include("pwned2");
  });

  it("refuses (exit 2, agent not run) when SSM Agent did not provide the parameters as variables", () => {
    const env: Record<string, string> = ssmEnv(RELEASE_ENV);
    delete env["SSM_version"];
    delete env["SSM_sha256"];
    const run = runDocument(runCommand, env);
    expect(run.status).to.equal(2);
    expect(run.stderr).to.contain("version sha256").and.contain("SSM Agent 3.3.2746.0");
    expect(run.stdout).to.equal("");
  });

  it("has an action parameter: deploy by default, or prepare-image, reaching the agent as ZCP_ACTION", () => {
    const action = doc.parameters[ACTION_PARAMETER];
    expect(action).to.include({ type: "String", default: "deploy", interpolationType: "ENV_VAR" });
    const pattern = new RegExp(action?.allowedPattern ?? "");
    expect(["deploy", "prepare-image"].every((v) => pattern.test(v))).to.equal(true);
    for (const bad of ["", "Deploy", "prepare-image;reboot", "prepare-image\n", "rollback", "$(reboot)"]) expect(pattern.test(bad), JSON.stringify(bad)).to.equal(false);
    // SSM hands the default to the command as SSM_action; an agent run without it deploys.
    expect(runDocument(runCommand, ssmEnv(RELEASE_ENV)).stdout).to.contain("action: deploy\n");
    expect(runDocument(runCommand, { ...ssmEnv(RELEASE_ENV), SSM_action: "prepare-image" }).stdout).to.contain("action: prepare-image\n");
  });

  it("never sets ZCP_IMAGE_ROOT, the directory only tests may point prepare-image at", () => {
    expect(runCommand.filter((l) => l.includes("ZCP_IMAGE_ROOT"))).to.deep.equal([]);
    expect(Object.values(doc.parameters).map((p) => p.description).join(" ")).to.not.include("ZCP_IMAGE_ROOT");
  });

  it("refuses content beyond SSM's document size limit", () => {
    // Random bytes do not compress: the embedded copy is gzipped.
    const noise = crypto.randomBytes(MAX_DOCUMENT_BYTES).toString("hex");
    expect(() => buildDeployDocument({ script: `#!/bin/bash\n# ${noise}\n` })).to.throw(/at most 65536/);
  });
});

describe("deploy document parameters (allowedPattern)", () => {
  it("accept the values of a typical release", () => {
    for (const p of DEPLOY_PARAMETERS) {
      expect(new RegExp(p.allowedPattern).test(RELEASE_ENV[p.env]), `${p.env}=${RELEASE_ENV[p.env]}`).to.equal(true);
    }
    const pattern = (env: string) => new RegExp(DEPLOY_PARAMETERS.find((p) => p.env === env)!.allowedPattern);
    expect(pattern("ZCP_ARTIFACT").test("/var/tmp/web-v1.tar.gz")).to.equal(true);
    for (const s of ["1", "59", "600", "1999", "3599", "3600"]) expect(pattern("ZCP_HEALTH_TIMEOUT_S").test(s), s).to.equal(true);
    for (const s of ["1", "9", "10", "49", "50"]) expect(pattern("ZCP_KEEP_RELEASES").test(s), s).to.equal(true);
  });

  it("refuse shell syntax and malformed values for every variable", () => {
    for (const p of DEPLOY_PARAMETERS) {
      for (const bad of HOSTILE_VALUES[p.env]) {
        expect(new RegExp(p.allowedPattern).test(bad), `${p.env}=${JSON.stringify(bad)}`).to.equal(false);
      }
    }
  });

  it("sendCommandParameters builds SendCommand Parameters from the agent environment", () => {
    const params = sendCommandParameters(RELEASE_ENV);
    expect(params).to.deep.equal(Object.fromEntries(DEPLOY_PARAMETERS.map((p) => [p.name, [RELEASE_ENV[p.env]]])));
  });

  it("sendCommandParameters sends the action only when it is not a deploy, and checks it", () => {
    expect(sendCommandParameters({ ...RELEASE_ENV, ZCP_ACTION: "deploy" })).to.not.have.property(ACTION_PARAMETER);
    expect(sendCommandParameters({ ...RELEASE_ENV, ZCP_ACTION: "prepare-image" })[ACTION_PARAMETER]).to.deep.equal(["prepare-image"]);
    expect(() => sendCommandParameters({ ...RELEASE_ENV, ZCP_ACTION: "prepare-image; reboot" })).to.throw(ConfigError, /^ZCP_ACTION: must match/);
  });

  it("sendCommandParameters names the variable a bad value was given for", () => {
    try {
      sendCommandParameters({ ...RELEASE_ENV, ZCP_VERSION: "v1; reboot" });
      expect.fail("expected a ConfigError");
    } catch (err) {
      expect(err).to.be.instanceOf(ConfigError);
      expect((err as ConfigError).field).to.equal("ZCP_VERSION");
    }
  });
});

describe("deploy document pinned to the configured runtime", () => {
  const pins = { appDir: "/opt/web", appUser: "web", service: "web.service", appRoot: "/opt/web" };
  const doc = buildDeployDocument({ script: stubAgentScript(), pins });
  const accepts = (name: string, value: string) => new RegExp(doc.parameters[name]!.allowedPattern).test(value);

  it("accepts exactly the configured app dir, app user and service, and any version", () => {
    expect(accepts("appDir", "/opt/web")).to.equal(true);
    expect(accepts("appUser", "web")).to.equal(true);
    expect(accepts("service", "web.service")).to.equal(true);
    for (const other of ["/opt/web2", "/opt", "/etc", "/opt/web/../../etc", "/root"]) expect(accepts("appDir", other), other).to.equal(false);
    for (const other of ["root", "ubuntu", "webx"]) expect(accepts("appUser", other), other).to.equal(false);
    // "." is literal: web.service, not webXservice.
    for (const other of ["webXservice", "sshd", "web.service2"]) expect(accepts("service", other), other).to.equal(false);
    expect(accepts("version", "v1.4.2")).to.equal(true);
  });

  it("tells the agent the configured app root, which no sender can change", () => {
    const run = runDocument(doc.mainSteps[0].inputs.runCommand, {
      ...ssmEnv({ ...RELEASE_ENV, ZCP_SERVICE: "web.service" }),
      ZCP_APP_ROOT: "/somewhere/else",
    });
    expect(run.status, run.stderr).to.equal(0);
    expect(run.stdout.split("\n")).to.include("ZCP_APP_ROOT=/opt/web");
  });

  it("refuses a configured value outside its parameter's pattern, naming the field", () => {
    expect(() => buildDeployDocument({ script: stubAgentScript(), pins: { ...pins, appUser: "root;reboot" } })).to.throw(
      ConfigError,
      /zcp:runtime\.user/,
    );
    expect(() => buildDeployDocument({ script: stubAgentScript(), pins: { ...pins, appRoot: "/opt/it's" } })).to.throw(
      ConfigError,
      /zcp:runtime\.appRoot/,
    );
  });
});

describe("agent script location", () => {
  it("finds the repository root from compiled code in dist/", () => {
    const root = repoRoot();
    expect(fs.existsSync(path.join(root, "package.json"))).to.equal(true);
    expect(path.basename(root)).to.not.equal("dist");
    expect(__dirname.startsWith(path.join(root, "dist"))).to.equal(true);
  });

  it("reads the agent byte for byte from shared/agent/ of a repository copy", () => {
    const copy = tempDir("zcp-repo-");
    fs.mkdirSync(path.join(copy, "shared", "agent"), { recursive: true });
    fs.writeFileSync(path.join(copy, AGENT_SCRIPT_PATH), stubAgentScript());
    try {
      const doc = buildDeployDocument({ rootDir: copy });
      expect(embeddedScript(doc.mainSteps[0].inputs.runCommand)).to.equal(stubAgentScript());
    } finally {
      fs.rmSync(copy, { recursive: true, force: true });
    }
  });

  it("names the missing file when there is no agent", () => {
    const empty = tempDir("zcp-repo-");
    try {
      expect(() => readAgentScript(empty)).to.throw(`cannot read the deploy agent at ${path.join(empty, AGENT_SCRIPT_PATH)}`);
    } finally {
      fs.rmSync(empty, { recursive: true, force: true });
    }
  });

  it("embeds the repository's own agent unchanged", function () {
    const real = path.join(repoRoot(), AGENT_SCRIPT_PATH);
    const doc = buildDeployDocument();
    expect(embeddedScript(doc.mainSteps[0].inputs.runCommand)).to.equal(fs.readFileSync(real, "utf8"));
  });
});

function step0RunCommand(d: { mainSteps: [{ inputs: { runCommand: string[] } }] }): string[] {
  return d.mainSteps[0].inputs.runCommand;
}
