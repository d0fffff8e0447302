/**
 * `zcp build`: lockfiles without hashes are refused before anything is downloaded, with the
 * file named; a build of the example app carries its wheels and a manifest that describes the
 * archive exactly, and is the same bytes every time.
 */
import { expect } from "chai";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { buildArtifact, cacachePath, MANIFEST_PATH, type ArtifactManifest } from "../../deploy/build/index.js";
import { checkPackageLock, checkRequirements } from "../../deploy/build/lockfiles.js";
import { exampleAppDir } from "../../deploy/local/fleet.js";
import { ConfigError, StepError } from "../../shared/errors.js";
import { seedNodeDependency } from "../fixtures/build/node.js";
import { extractArchive, listArchive, tempDir } from "../fixtures/package/trees.js";
import { configErrorOf } from "./support/config-error.js";

const HASH = "b4a176135eb862c3d0ee271ca47fb9c209fd682225bc5c4ec5d951cc4da2bbb4";

async function rejection(p: Promise<unknown>): Promise<ConfigError> {
  try {
    await p;
  } catch (err) {
    expect(err).to.be.instanceOf(ConfigError);
    return err as ConfigError;
  }
  return expect.fail("expected a ConfigError");
}

describe("zcp build: lockfile rules", function () {
  it("accepts pinned, hashed requirements, with continuations, comments and local find-links", function () {
    const lock = checkRequirements(`# pinned\n--no-index\n--find-links ./vendor\nzcp-example-dep==1.0.0 \\\n    --hash=sha256:${HASH}\nother[extra]==2.1 --hash sha256:${HASH} ; python_version >= "3.8"\n`);
    expect(lock.requirements).to.deep.equal(["zcp-example-dep==1.0.0", "other[extra]==2.1"]);
  });

  it("refuses a requirement without a hash, naming the file and the line", function () {
    const err = configErrorOf(() => checkRequirements(`flask==3.0.0 --hash=sha256:${HASH}\n\nrequests==2.31.0\n`));
    expect(err.field).to.equal("requirements.txt: line 3");
    expect(err.message).to.match(/"requests==2\.31\.0" has no --hash=sha256:…; a lockfile without hashes is refused/);
  });

  it("refuses unpinned requirements, direct references, indexes, remote find-links and includes", function () {
    expect(configErrorOf(() => checkRequirements(`flask>=3 --hash=sha256:${HASH}\n`)).message).to.match(/not pinned with ==/);
    expect(configErrorOf(() => checkRequirements(`flask @ https://example.com/flask.whl --hash=sha256:${HASH}\n`)).message).to.match(/direct reference/);
    expect(configErrorOf(() => checkRequirements("--index-url https://pypi.example.com/simple\n")).field).to.equal("requirements.txt: line 1");
    expect(configErrorOf(() => checkRequirements("--extra-index-url=https://pypi.example.com/simple\n")).message).to.match(/package index/);
    expect(configErrorOf(() => checkRequirements("-f https://example.com/wheels/\n")).message).to.match(/reach the network on the instance|would make the instance reach the network/);
    expect(configErrorOf(() => checkRequirements("-r base.txt\n")).message).to.match(/not supported in a hermetic build/);
  });

  it("refuses a package-lock entry without integrity, naming the file and the package", function () {
    const lock = (entry: object) =>
      JSON.stringify({ lockfileVersion: 3, packages: { "": { name: "app" }, "node_modules/left-pad": { version: "1.3.0", ...entry } } });
    const err = configErrorOf(() => checkPackageLock(lock({ resolved: "https://registry.npmjs.org/left-pad/-/left-pad-1.3.0.tgz" }), "{}"));
    expect(err.field).to.equal('package-lock.json: "node_modules/left-pad"');
    expect(err.message).to.match(/no integrity hash; a lockfile without hashes is refused/);
    expect(configErrorOf(() => checkPackageLock(JSON.stringify({ lockfileVersion: 1, dependencies: {} }), "{}")).message).to.match(/lockfileVersion must be 2 or 3/);
    expect(configErrorOf(() => checkPackageLock(lock({}), undefined)).message).to.match(/no package.json beside it/);
    // Dev dependencies are never installed on an instance: they need no hash.
    expect(checkPackageLock(lock({ dev: true }), "{}").packages).to.deep.equal([]);
  });

  it("maps an integrity to npm's content-addressed cache path", function () {
    const sri = `sha512-${Buffer.alloc(64, 0xab).toString("base64")}`;
    expect(cacachePath(sri)).to.equal(path.join("content-v2", "sha512", "ab", "ab", "ab".repeat(62)));
  });
});

describe("zcp build: the artifact", function () {
  this.timeout(120000);
  const cleanup: string[] = [];
  const scratch = (prefix: string) => {
    const dir = tempDir(prefix);
    cleanup.push(dir);
    return dir;
  };
  after(() => {
    for (const dir of cleanup) fs.rmSync(dir, { recursive: true, force: true });
  });

  const appCopy = (): string => {
    const dir = scratch("build-src");
    fs.cpSync(exampleAppDir(), dir, { recursive: true, filter: (p) => !/(^|\/)(__pycache__|\.venv)(\/|$)/.test(p) });
    return dir;
  };

  it("carries the wheels pip resolved and a manifest, last, with every file's sha256; twice gives the same bytes", async function () {
    const src = appCopy();
    const first = await buildArtifact({ version: "1.2.3", source: { kind: "dir", dir: src }, outDir: scratch("build-out") });
    const second = await buildArtifact({ version: "1.2.3", source: { kind: "dir", dir: src }, outDir: scratch("build-out") });
    expect(second.sha256).to.equal(first.sha256);

    const names = listArchive(first.path).map((e) => e.name);
    expect(names.at(-1)).to.equal(MANIFEST_PATH);
    expect(names).to.include(".zcp/wheels/zcp_example_dep-1.0.0-py3-none-any.whl");
    const into = scratch("build-extract");
    extractArchive(first.path, into);
    const manifest = JSON.parse(fs.readFileSync(path.join(into, MANIFEST_PATH), "utf8")) as ArtifactManifest;
    expect(manifest).to.deep.equal(first.manifest);
    expect(manifest.version).to.equal("1.2.3");
    const sha = (data: Buffer | string) => createHash("sha256").update(data).digest("hex");
    expect(manifest.lockfiles["requirements.txt"]).to.equal(sha(fs.readFileSync(path.join(src, "requirements.txt"))));
    expect(manifest.dependencies.python?.wheels).to.deep.equal([{ file: "zcp_example_dep-1.0.0-py3-none-any.whl", sha256: HASH }]);
    expect(manifest.builder).to.include.keys("zcp", "node", "python", "pip");
    const listed = manifest.files.map((f) => f.path);
    const onDisk = names.filter((n) => !n.endsWith("/") && n !== MANIFEST_PATH);
    expect(listed).to.deep.equal(onDisk);
    for (const f of manifest.files) expect(f.sha256, f.path).to.equal(sha(fs.readFileSync(path.join(into, f.path))));
  });

  /**
   * A python3 that records every `pip download` it runs (in `log`), then is the real one: the
   * count tells a build that resolved from one that reused the cache.
   */
  const countingPython = (): { python: string; downloads: () => number } => {
    const dir = scratch("build-python");
    const log = path.join(dir, "calls");
    fs.writeFileSync(log, "");
    const python = path.join(dir, "python3");
    fs.writeFileSync(python, `#!/bin/sh\ncase " $* " in *" pip download "*) echo download >>"${log}" ;; esac\nexec python3 "$@"\n`, { mode: 0o755 });
    return { python, downloads: () => fs.readFileSync(log, "utf8").split("\n").filter(Boolean).length };
  };
  const withPython = async <T>(python: string, fn: () => Promise<T>): Promise<T> => {
    const saved = process.env.ZCP_BUILD_PYTHON;
    process.env.ZCP_BUILD_PYTHON = python;
    try {
      return await fn();
    } finally {
      if (saved === undefined) delete process.env.ZCP_BUILD_PYTHON;
      else process.env.ZCP_BUILD_PYTHON = saved;
    }
  };

  it("reuses the wheels of an unchanged lockfile from its cache: the same bytes as a build without it, and no second pip run", async function () {
    const src = appCopy();
    const cacheDir = path.join(scratch("build-cache"), "wheels");
    const { python, downloads } = countingPython();
    const build = (cache?: string) =>
      withPython(python, () => buildArtifact({ version: "1.2.3", source: { kind: "dir", dir: src }, outDir: scratch("build-out"), ...(cache ? { cacheDir: cache } : {}) }));
    const uncached = await build();
    const cold = await build(cacheDir);
    expect(downloads()).to.equal(2);
    const warm = await build(cacheDir);
    expect(downloads(), "pip ran again for an unchanged lockfile").to.equal(2);
    expect(warm.sha256).to.equal(uncached.sha256);
    expect(cold.sha256).to.equal(uncached.sha256);
    expect(warm.manifest).to.deep.equal(uncached.manifest);
    // A changed lockfile is another entry: pip resolves it.
    fs.appendFileSync(path.join(src, "requirements.txt"), "# changed\n");
    await build(cacheDir);
    expect(downloads()).to.equal(3);
  });

  it("never ships a cached wheel the lockfile does not pin (a poisoned cache): pip resolves again and the entry is replaced", async function () {
    const src = appCopy();
    const cacheDir = path.join(scratch("build-cache"), "wheels");
    const { python, downloads } = countingPython();
    const build = () => withPython(python, () => buildArtifact({ version: "1.2.3", source: { kind: "dir", dir: src }, outDir: scratch("build-out"), cacheDir }));
    const clean = await build();
    const [entry] = fs.readdirSync(cacheDir).filter((n) => !n.startsWith("."));
    if (!entry) return expect.fail("no cache entry was written");
    // The attacker swaps the cached wheel and rewrites the entry's index to match it.
    const wheel = path.join(cacheDir, entry, "zcp_example_dep-1.0.0-py3-none-any.whl");
    const poisoned = Buffer.concat([fs.readFileSync(wheel), Buffer.from("# planted\n")]);
    fs.writeFileSync(wheel, poisoned);
    const index = path.join(cacheDir, entry, "wheels.json");
    fs.writeFileSync(index, JSON.stringify([{ file: path.basename(wheel), sha256: createHash("sha256").update(poisoned).digest("hex") }]));
    const again = await build();
    expect(downloads(), "the poisoned entry was used instead of pip").to.equal(2);
    expect(again.sha256).to.equal(clean.sha256);
    expect(again.manifest.dependencies.python?.wheels).to.deep.equal([{ file: path.basename(wheel), sha256: HASH }]);
    expect(createHash("sha256").update(fs.readFileSync(wheel)).digest("hex")).to.equal(HASH);
  });

  it("does not hide a changed vendored wheel behind the cache: pip refuses it as without a cache", async function () {
    const src = appCopy();
    const cacheDir = path.join(scratch("build-cache"), "wheels");
    await buildArtifact({ version: "1.2.3", source: { kind: "dir", dir: src }, outDir: scratch("build-out"), cacheDir });
    const vendored = path.join(src, "vendor", "zcp_example_dep-1.0.0-py3-none-any.whl");
    fs.appendFileSync(vendored, "# changed\n");
    try {
      await buildArtifact({ version: "1.2.3", source: { kind: "dir", dir: src }, outDir: scratch("build-out"), cacheDir });
      expect.fail("a wheel that no longer matches its --hash was built");
    } catch (err) {
      expect(err).to.be.instanceOf(StepError);
      expect((err as Error).message).to.match(/Downloading the Python dependencies of requirements\.txt/);
    }
  });

  it("refuses a requirements.txt without hashes before downloading anything, and writes nothing", async function () {
    const src = appCopy();
    fs.writeFileSync(path.join(src, "requirements.txt"), "--no-index\n--find-links ./vendor\nzcp-example-dep==1.0.0\n");
    const out = path.join(scratch("build-out"), "never");
    const err = await rejection(buildArtifact({ version: "1.2.3", source: { kind: "dir", dir: src }, outDir: out }));
    expect(err.field).to.equal("requirements.txt: line 3");
    expect(err.message).to.match(/has no --hash/);
    expect(fs.existsSync(out)).to.equal(false);
  });

  it("ships the npm tarballs of package-lock.json by integrity, with no cache index (content only)", async function () {
    const work = scratch("build-node");
    const seeded = seedNodeDependency(work);
    const src = appCopy();
    for (const [name, text] of Object.entries(seeded.files)) fs.writeFileSync(path.join(src, name), text);
    const saved = { cache: process.env.npm_config_cache, offline: process.env.npm_config_offline };
    process.env.npm_config_cache = seeded.cache;
    process.env.npm_config_offline = "true";
    let built;
    try {
      built = await buildArtifact({ version: "2.0.0", source: { kind: "dir", dir: src }, outDir: scratch("build-out") });
    } finally {
      if (saved.cache === undefined) delete process.env.npm_config_cache;
      else process.env.npm_config_cache = saved.cache;
      if (saved.offline === undefined) delete process.env.npm_config_offline;
      else process.env.npm_config_offline = saved.offline;
    }
    const names = listArchive(built.path).map((e) => e.name);
    const shipped = names.filter((n) => n.startsWith(".zcp/npm-cache/") && !n.endsWith("/"));
    expect(shipped).to.deep.equal([path.join(".zcp/npm-cache/_cacache", cacachePath(seeded.integrity))]);
    expect(built.manifest.dependencies.node).to.deep.equal({ packages: 1 });
    expect(built.manifest.lockfiles).to.have.keys("requirements.txt", "package-lock.json");
  });
});
