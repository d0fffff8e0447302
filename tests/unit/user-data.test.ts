import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { expect } from "chai";
import { sha256Hex } from "../../shared/agent/document.js";
import { type ConvergeScriptArgs, buildConvergeScript, shellQuote } from "../../infra/user-data.js";
import { agentObjectKey } from "../../infra/deploy-document.js";
import { RELEASE_SHA256, stubAgentScript } from "../fixtures/infra/agent.js";
import { readAgentScript, repoRoot } from "../../shared/agent/document.js";

const BUCKET = "zcp-web-dev-abc1234";
const FAKE_AWS = path.join(repoRoot(), "tests", "fixtures", "infra", "fake-aws.sh");
const FAKE_USERADD = path.join(repoRoot(), "tests", "fixtures", "infra", "fake-useradd.sh");
/** An app user no machine has: the user data must create it (through the fake useradd). */
const BOOT_USER = "zcp-web-boot";

interface Boot {
  root: string;
  appDir: string;
  s3: string;
  logFile: string;
  args: ConvergeScriptArgs;
}

/** A fake instance: an app dir, an S3 bucket as a directory, the agent copy in it. */
function fakeInstance(options: { current?: string; agent?: string } = {}): Boot {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "zcp-boot-"));
  const appDir = path.join(root, "app");
  const s3 = path.join(root, "s3");
  fs.mkdirSync(path.join(appDir, "releases"), { recursive: true });
  if (options.current) {
    fs.mkdirSync(path.join(appDir, "releases", options.current));
    fs.symlinkSync(`releases/${options.current}`, path.join(appDir, "current"));
  }
  const script = stubAgentScript();
  const sha = sha256Hex(script);
  const key = agentObjectKey("web", sha);
  fs.mkdirSync(path.dirname(path.join(s3, BUCKET, key)), { recursive: true });
  fs.writeFileSync(path.join(s3, BUCKET, key), options.agent ?? script);
  fs.mkdirSync(path.join(root, "bin"));
  fs.copyFileSync(FAKE_AWS, path.join(root, "bin", "aws"));
  fs.chmodSync(path.join(root, "bin", "aws"), 0o755);
  fs.copyFileSync(FAKE_USERADD, path.join(root, "bin", "useradd"));
  fs.chmodSync(path.join(root, "bin", "useradd"), 0o755);
  const logFile = path.join(root, "converge.log");
  return {
    root,
    appDir,
    s3,
    logFile,
    args: {
      app: "web",
      environment: "dev",
      region: "eu-west-1",
      bucket: BUCKET,
      agentKey: key,
      agentSha256: sha,
      appDir,
      appRoot: appDir,
      appUser: BOOT_USER,
      service: "web",
      processManager: "supervisor",
      healthUrl: "http://127.0.0.1:8080/health",
      healthTimeoutS: 60,
      keepReleases: 3,
      logFile,
    },
  };
}

function publishLatest(boot: Boot, latest: Record<string, unknown>): void {
  const file = path.join(boot.s3, BUCKET, "releases", "web", "latest.json");
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, JSON.stringify(latest));
}

function boot(b: Boot, env: Record<string, string> = {}) {
  const file = path.join(b.root, "user-data.sh");
  fs.writeFileSync(file, buildConvergeScript(b.args));
  const result = spawnSync("bash", [file], {
    env: { PATH: `${path.join(b.root, "bin")}:${process.env.PATH ?? "/usr/bin:/bin"}`, FAKE_S3_ROOT: b.s3, ...env },
    encoding: "utf8",
  });
  const log = fs.existsSync(b.logFile) ? fs.readFileSync(b.logFile, "utf8") : "";
  const requestsFile = path.join(b.s3, "requests.log");
  const requests = fs.existsSync(requestsFile) ? fs.readFileSync(requestsFile, "utf8").trim().split("\n") : [];
  return { status: result.status, log, requests };
}

describe("launch template user data (infra/user-data.ts)", () => {
  const made: string[] = [];
  const instance = (options?: { current?: string; agent?: string }) => {
    const b = fakeInstance(options);
    made.push(b.root);
    return b;
  };
  after(() => made.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));

  it("is valid bash", () => {
    const b = instance();
    const file = path.join(b.root, "user-data.sh");
    fs.writeFileSync(file, buildConvergeScript(b.args));
    const check = spawnSync("bash", ["-n", file], { encoding: "utf8" });
    expect(check.status, check.stderr).to.equal(0);
  });

  it("creates the app as a dedicated system user without a login shell, and makes the app root root's", () => {
    const b = instance();
    fs.chownSync(b.appDir, 1, 1);
    fs.chmodSync(b.appDir, 0o777);
    const run = boot(b);
    expect(run.status, run.log).to.equal(0);
    const useradd = fs.readFileSync(path.join(b.s3, "useradd.log"), "utf8").trim();
    expect(useradd).to.equal(`--system --user-group --no-create-home --home-dir ${b.appDir}/shared --shell /usr/sbin/nologin ${BOOT_USER}`);
    const st = fs.statSync(b.appDir);
    expect([st.uid, st.gid, (st.mode & 0o7777).toString(8)]).to.deep.equal([0, 0, "755"]);
  });

  it("keeps the image as it is when nothing was released yet", () => {
    const b = instance();
    const run = boot(b);
    expect(run.status, run.log).to.equal(0);
    expect(run.log).to.contain("no release yet");
    expect(run.requests).to.deep.equal([`${BUCKET}/releases/web/latest.json`]);
  });

  it("does nothing when the image already runs the released version", () => {
    const b = instance({ current: "v1.4.2" });
    publishLatest(b, { version: "v1.4.2", key: "releases/web/v1.4.2.tar.gz", sha256: RELEASE_SHA256 });
    const run = boot(b);
    expect(run.status, run.log).to.equal(0);
    expect(run.log).to.contain("already on v1.4.2");
    expect(run.log).to.not.contain("ZCP_VERSION=");
  });

  it("runs the published agent on the released version when the image is older", () => {
    const b = instance({ current: "v1.4.1" });
    publishLatest(b, { version: "v1.4.2", key: "releases/web/v1.4.2.tar.gz", sha256: RELEASE_SHA256, image: "ami-0123", time: "t", sequence: 7 });
    const run = boot(b, { ZCP_STUB_EXIT: "0" });
    expect(run.status, run.log).to.equal(0);
    expect(run.requests).to.deep.equal([`${BUCKET}/releases/web/latest.json`, `${BUCKET}/${b.args.agentKey}`]);
    const seen = run.log.split("\n").filter((l) => l.startsWith("ZCP_"));
    expect(seen).to.deep.equal([
      "ZCP_APP=web",
      "ZCP_VERSION=v1.4.2",
      `ZCP_ARTIFACT=s3://${BUCKET}/releases/web/v1.4.2.tar.gz`,
      `ZCP_SHA256=${RELEASE_SHA256}`,
      `ZCP_APP_DIR=${b.appDir}`,
      `ZCP_APP_ROOT=${b.appDir}`,
      `ZCP_APP_USER=${BOOT_USER}`,
      "ZCP_SERVICE=web",
      "ZCP_PROCESS_MANAGER=supervisor",
      "ZCP_HEALTH_URL=http://127.0.0.1:8080/health",
      "ZCP_HEALTH_TIMEOUT_S=60",
      "ZCP_KEEP_RELEASES=3",
      "ZCP_SEQUENCE=7",
    ]);
  });

  describe("never moves an instance to an older release", () => {
    /** The state dir as the agent leaves it: the release it installed, with its sequence. */
    function ranRelease(b: Boot, record: string): Record<string, string> {
      const stateDir = path.join(b.root, "state");
      fs.mkdirSync(stateDir, { mode: 0o700 });
      fs.writeFileSync(path.join(stateDir, "sequence"), record);
      return { ZCP_STATE_DIR: stateDir, ZCP_STUB_EXIT: "0" };
    }

    it("keeps the release it runs when latest.json is older (booted from a new image before the pointer moved)", () => {
      const b = instance({ current: "v1.4.2" });
      const env = ranRelease(b, "8 v1.4.2\n");
      publishLatest(b, { version: "v1.4.1", key: "releases/web/v1.4.1.tar.gz", sha256: RELEASE_SHA256, sequence: 7 });
      const run = boot(b, env);
      expect(run.status, run.log).to.equal(0);
      expect(run.log).to.contain("latest.json names v1.4.1 (sequence 7), older than v1.4.2 (sequence 8) this instance runs: keeping v1.4.2");
      expect(run.log, "the agent never ran").to.not.contain("ZCP_VERSION=");
      expect(run.requests).to.deep.equal([`${BUCKET}/releases/web/latest.json`]);
    });

    it("keeps it too when latest.json carries no sequence (written before sequences existed)", () => {
      const b = instance({ current: "v1.4.2" });
      const env = ranRelease(b, "1 v1.4.2\n");
      publishLatest(b, { version: "v1.4.1", key: "releases/web/v1.4.1.tar.gz", sha256: RELEASE_SHA256 });
      const run = boot(b, env);
      expect(run.status, run.log).to.equal(0);
      expect(run.log).to.contain("keeping v1.4.2");
      expect(run.log).to.not.contain("ZCP_VERSION=");
    });

    it("converges to a newer pointer, handing the agent its sequence", () => {
      const b = instance({ current: "v1.4.1" });
      const env = ranRelease(b, "7 v1.4.1\n");
      publishLatest(b, { version: "v1.4.2", key: "releases/web/v1.4.2.tar.gz", sha256: RELEASE_SHA256, sequence: 8 });
      const run = boot(b, env);
      expect(run.status, run.log).to.equal(0);
      expect(run.log).to.contain("ZCP_VERSION=v1.4.2");
      expect(run.log).to.contain("ZCP_SEQUENCE=8");
    });

    it("trusts no record that names another release than the one current points at", () => {
      const b = instance({ current: "v1.4.1" });
      const env = ranRelease(b, "9 v1.4.3\n");
      publishLatest(b, { version: "v1.4.2", key: "releases/web/v1.4.2.tar.gz", sha256: RELEASE_SHA256, sequence: 8 });
      const run = boot(b, env);
      expect(run.status, run.log).to.equal(0);
      expect(run.log).to.contain("ZCP_VERSION=v1.4.2");
    });

    it("looks for the record where the agent, run as root, keeps its state for this app dir", () => {
      const b = instance({ current: "v1.4.1" });
      const script = buildConvergeScript(b.args);
      const userData = script.split("\n").find((l) => l.includes('state_dir="/var/lib/zcp/'));
      const agent = readAgentScript();
      const fn = (name: string) => new RegExp(`^${name}\\(\\) \\{[\\s\\S]*?^\\}`, "m").exec(agent)?.[0] ?? `${name}() { false; }`;
      const both = spawnSync(
        "bash",
        [
          "-c",
          [
            "set -eu",
            'APP_DIR="$1"; ZCP_APP=web; APP_REAL="$(realpath -m -- "$APP_DIR")"; app_real="$(realpath -e "$APP_DIR")"',
            fn("app_dir_key"),
            // The agent's default as root (EUID is read-only in bash, so the test pins the branch).
            fn("state_dir_default").replace("((EUID == 0))", "true"),
            userData ?? "false",
            'printf "%s\\n%s\\n" "$(state_dir_default)" "$state_dir"',
          ].join("\n"),
          "-",
          b.appDir,
        ],
        { encoding: "utf8" },
      );
      const [fromAgent, fromUserData] = both.stdout.trim().split("\n");
      expect(both.status, both.stderr).to.equal(0);
      expect(fromAgent).to.match(/^\/var\/lib\/zcp\/web-[0-9a-f]{16}$/);
      expect(fromUserData).to.equal(fromAgent);
    });

    it("refuses a latest.json whose sequence is not a whole number", () => {
      const b = instance({ current: "v1.4.1" });
      publishLatest(b, { version: "v1.4.2", key: "releases/web/v1.4.2.tar.gz", sha256: RELEASE_SHA256, sequence: "8; reboot" });
      const run = boot(b, { ZCP_STUB_EXIT: "0" });
      expect(run.status).to.equal(1);
      expect(run.log).to.contain("latest.json: invalid sequence");
      expect(run.log).to.not.contain("ZCP_VERSION=");
    });
  });

  it("deploys on a fresh base image without any release, and reports the agent's failure", () => {
    const b = instance();
    publishLatest(b, { version: "v2", key: "releases/web/v2.tar.gz", sha256: RELEASE_SHA256 });
    const run = boot(b, { ZCP_STUB_EXIT: "1" });
    expect(run.status).to.equal(1);
    expect(run.log).to.contain("image has no release, latest is v2").and.contain("ZCP_VERSION=v2");
  });

  it("refuses an agent copy that does not match its SHA-256", () => {
    const b = instance({ current: "v1", agent: `${stubAgentScript()}\necho tampered\n` });
    publishLatest(b, { version: "v2", key: "releases/web/v2.tar.gz", sha256: RELEASE_SHA256 });
    const run = boot(b);
    expect(run.status).to.equal(1);
    expect(run.log).to.contain("does not match its SHA-256").and.not.contain("ZCP_VERSION=");
  });

  const badPointers: [string, Record<string, unknown>][] = [
    ["a version with shell syntax", { version: "v2;reboot", key: "releases/web/v2.tar.gz", sha256: RELEASE_SHA256 }],
    ["a key outside the app's prefix", { version: "v2", key: "releases/api/v2.tar.gz", sha256: RELEASE_SHA256 }],
    ["a key climbing out of the prefix", { version: "v2", key: "releases/web/../api/v2.tar.gz", sha256: RELEASE_SHA256 }],
    ["a malformed sha256", { version: "v2", key: "releases/web/v2.tar.gz", sha256: "abc" }],
    ["missing fields", { version: "v2" }],
  ];
  for (const [what, latest] of badPointers) {
    it(`refuses latest.json with ${what}`, () => {
      const b = instance({ current: "v1" });
      publishLatest(b, latest);
      const run = boot(b);
      expect(run.status).to.equal(1);
      expect(run.log).to.contain("latest.json").and.not.contain("ZCP_VERSION=");
      expect(run.requests).to.have.length(1);
    });
  }

  it("quotes every configured value", () => {
    expect(shellQuote("it's")).to.equal(`'it'\\''s'`);
    const b = instance();
    const text = buildConvergeScript(b.args);
    expect(text).to.contain(`BUCKET='${BUCKET}'`).and.contain("export AWS_DEFAULT_REGION='eu-west-1'");
    expect(text).to.contain(`AGENT_SHA256='${b.args.agentSha256}'`);
  });
});
