/**
 * zcp as another team gets it: `npm pack` of this repository, the tarball installed into a
 * scratch project with npm, and from there `npx zcp --version`, `npx zcp release --help`,
 * both module systems' imports of the components, and a release on the local environment
 * run by the installed copy (not by this checkout's bin/).
 */
import { expect } from "chai";
import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { REPO_ROOT } from "../helpers/emulator.js";
import { collect, type ZcpRun } from "../helpers/zcp.js";

const pkg = JSON.parse(fs.readFileSync(path.join(REPO_ROOT, "package.json"), "utf8")) as {
  name: string;
  version: string;
  license: string;
  private?: boolean;
};

function npm(args: string[], cwd: string): string {
  const r = spawnSync("npm", args, { cwd, encoding: "utf8", env: { ...process.env, npm_config_update_notifier: "false" } });
  if (r.status !== 0) throw new Error(`npm ${args.join(" ")} exited ${r.status}: ${r.stderr}`);
  return r.stdout;
}

describe("the npm package, installed into a scratch project", function () {
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), "zcp-pack-"));
  // As root the local fleet's app runs as a dedicated user, which must reach the fleet's folders.
  fs.chmodSync(scratch, 0o755);
  const project = path.join(scratch, "project");
  const workDir = path.join(scratch, "work");
  let tarball = "";
  let files: string[] = [];

  /** Runs the installed `zcp` through npx from the scratch project. */
  async function npxZcp(args: string[]): Promise<ZcpRun> {
    const child = spawn("npx", ["--no-install", "zcp", ...args], {
      cwd: project,
      env: {
        ...process.env,
        CI: "true",
        ZCP_WORK_DIR: workDir,
        // The installed package has no .tools of its own; point it at this checkout's.
        ZCP_TOOLS_DIR: path.join(REPO_ROOT, ".tools"),
        ZCP_LOCAL_INSTANCES: "1",
        ZCP_LOCAL_SOAK_S: "0",
        ZCP_LOCAL_HEALTH_TIMEOUT_S: "6",
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    return await collect(child);
  }

  before(async function () {
    // --ignore-scripts: the test suite has just built dist/; prepack would rebuild it.
    const out = JSON.parse(npm(["pack", "--json", "--ignore-scripts", "--pack-destination", scratch], REPO_ROOT)) as {
      filename: string;
      files: { path: string }[];
    }[];
    tarball = path.join(scratch, out[0]!.filename);
    files = out[0]!.files.map((f) => f.path);
    fs.mkdirSync(project);
    fs.writeFileSync(path.join(project, "package.json"), JSON.stringify({ name: "platform-team", version: "1.0.0", private: true }));
    // Dependencies come from npm's cache where it has them; no install script runs.
    npm(["install", tarball, "--prefer-offline", "--no-audit", "--no-fund", "--ignore-scripts"], project);
  });
  after(async function () {
    if (fs.existsSync(path.join(project, "node_modules"))) await npxZcp(["local", "down"]);
    fs.rmSync(scratch, { recursive: true, force: true });
  });

  it("is public, ships its licence, the built runner and the agent, and no tests", function () {
    expect(pkg.private, "package.json private").to.not.equal(true);
    const licence = fs.readFileSync(path.join(REPO_ROOT, "LICENSE"), "utf8");
    expect(pkg.license).to.equal("Apache-2.0");
    expect(licence).to.match(/Apache License\s+Version 2\.0, January 2004/);
    for (const f of ["LICENSE", "bin/zcp", "dist/deploy/cli.js", "dist/infra/components.js", "dist/infra/components.d.ts", "infra/components.mjs", "shared/agent/zcp-agent.sh"]) {
      expect(files, f).to.include(f);
    }
    expect(files.filter((f) => f.startsWith("dist/tests/") || f.startsWith("dist/bench/") || f.endsWith(".tsbuildinfo"))).to.deep.equal([]);
  });

  it("npx zcp --version prints the package's version; npx zcp release --help exits 0", async function () {
    const v = await npxZcp(["--version"]);
    expect(v.code, v.stderr).to.equal(0);
    expect(v.stdout.trim()).to.equal(pkg.version);
    const h = await npxZcp(["release", "--help"]);
    expect(h.code, h.stderr).to.equal(0);
    expect(h.stdout).to.match(/^usage: zcp release --env ENV --version VERSION/);
  });

  it("exports the components to CommonJS and ES modules alike (one copy of each class), reading no stack config", function () {
    const script = `
      import * as esm from ${JSON.stringify(pkg.name)};
      import { createRequire } from "node:module";
      const cjs = createRequire(import.meta.url)(${JSON.stringify(pkg.name)});
      const names = ["ArtifactBucket", "DeployDocument", "Fleet", "GitHubOidc", "Roles", "parseConfig", "ExitCode"];
      console.log(JSON.stringify(names.map((n) => [n, typeof esm[n], esm[n] === cjs[n]])));
      const cli = await import(${JSON.stringify(`${pkg.name}/cli`)});
      console.log(typeof cli.main);`;
    const r = spawnSync(process.execPath, ["--input-type=module", "-e", script], { cwd: project, encoding: "utf8" });
    expect(r.status, r.stderr).to.equal(0);
    const [components, cliMain] = r.stdout.trim().split("\n");
    for (const [name, type, same] of JSON.parse(components!) as [string, string, boolean][]) {
      expect(type, name).to.match(/^(function|object)$/);
      expect(same, `${name} is the same object from import and require`).to.equal(true);
    }
    expect(cliMain).to.equal("function");
  });

  it("releases to the local environment from the installed copy", async function () {
    const r = await npxZcp(["release", "--env", "local", "--version", "pkg-v1", "--skip-image"]);
    expect(r.code, r.stdout + r.stderr).to.equal(0);
    expect(r.stdout).to.match(/released pkg-v1 to local/);
    // The engine loaded the dynamic providers from the scratch project's node_modules.
    expect(fs.realpathSync(path.join(workDir, "release", "local", "node_modules"))).to.equal(fs.realpathSync(path.join(project, "node_modules")));
    const s = await npxZcp(["status", "--env", "local", "--json"]);
    expect(s.code, s.stderr).to.equal(0);
    expect(s.stdout).to.include('"pkg-v1"');
  });
});
