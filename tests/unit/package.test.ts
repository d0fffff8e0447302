/**
 * Release packaging: the archive of a tree is the same wherever and however often it is built,
 * and the system tar (what the deploy agent runs) reads back exactly the tree that went in.
 */
import { expect } from "chai";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as net from "node:net";
import * as path from "node:path";
import { gunzipSync } from "node:zlib";
import { PACKAGE_MTIME, packageSource, type PackageOptions, type PackageResult } from "../../deploy/package/index.js";
import { ConfigError } from "../../shared/errors.js";
import {
  extractArchive,
  git,
  initRepo,
  listArchive,
  longPath,
  tempDir,
  writeTree,
  type TreeSpec,
} from "../fixtures/package/trees.js";

const APP: TreeSpec = {
  "README.md": "# app\n",
  "bin/start": { content: "#!/bin/sh\nexec node server.js\n", executable: true },
  "src/server.js": "console.log('up');\n",
  "src/lib/util.js": "module.exports = 1;\n",
  "config/app.json": '{"port": 8080}\n',
  "current-config": { symlink: "config/app.json" },
};

describe("packageSource", function () {
  const cleanup: string[] = [];
  const scratch = (prefix: string): string => {
    const dir = tempDir(prefix);
    cleanup.push(dir);
    return dir;
  };
  after(() => {
    for (const dir of cleanup) fs.rmSync(dir, { recursive: true, force: true });
  });

  /** Packages into a fresh directory of its own, so results never collide. */
  const pack = (opts: Omit<PackageOptions, "outDir">): Promise<PackageResult> =>
    packageSource({ ...opts, outDir: scratch("package-out") });

  const packDir = (dir: string, extra: Omit<PackageOptions, "source" | "outDir"> = {}): Promise<PackageResult> =>
    pack({ source: { kind: "dir", dir }, ...extra });

  const treeOf = (spec: TreeSpec, opts: Parameters<typeof writeTree>[2] = {}): string => {
    const dir = scratch("package-src");
    writeTree(dir, spec, opts);
    return dir;
  };

  async function rejection(promise: Promise<unknown>): Promise<ConfigError> {
    try {
      await promise;
    } catch (err) {
      expect(err).to.be.instanceOf(ConfigError);
      return err as ConfigError;
    }
    return expect.fail("expected a ConfigError, but packaging succeeded");
  }

  describe("reproducibility", function () {
    it("gives the same archive on two runs, named and measured by its sha256", async function () {
      const src = treeOf(APP);
      const first = await packDir(src);
      const second = await packDir(src);

      expect(second.sha256).to.equal(first.sha256);
      const bytes = fs.readFileSync(first.path);
      expect(createHash("sha256").update(bytes).digest("hex")).to.equal(first.sha256);
      expect(first.bytes).to.equal(bytes.length);
      expect(path.basename(first.path)).to.equal(`${first.sha256}.tar.gz`);
      expect(fs.readFileSync(second.path).equals(bytes)).to.equal(true);
      expect(first.files).to.equal(6);
      expect(first).not.to.have.property("commit");
    });

    it("ignores mtimes, umask, permission bits other than owner-execute, and creation order", async function () {
      const a = treeOf(APP, { order: "forward", mtime: new Date("2024-05-06T07:08:09Z"), fileMode: 0o644, dirMode: 0o755 });
      const b = treeOf(APP, { order: "reverse", mtime: new Date("2011-01-02T03:04:05Z"), fileMode: 0o600, dirMode: 0o700 });
      const first = await packDir(a);
      const previous = process.umask(0o077);
      let second: PackageResult;
      try {
        second = await packDir(b);
      } finally {
        process.umask(previous);
      }
      expect(second.sha256).to.equal(first.sha256);
    });

    it("changes when a file's content, executable bit or a symlink target changes", async function () {
      const base = (await packDir(treeOf(APP))).sha256;
      const edited = (await packDir(treeOf({ ...APP, "src/server.js": "console.log('down');\n" }))).sha256;
      const chmodded = (await packDir(treeOf({ ...APP, "README.md": { content: "# app\n", executable: true } }))).sha256;
      const relinked = (await packDir(treeOf({ ...APP, "current-config": { symlink: "README.md" } }))).sha256;
      expect(new Set([base, edited, chmodded, relinked]).size).to.equal(4);
    });

    it("gives the same bytes whatever the compression concurrency", async function () {
      // Several compression blocks, so block order and dictionaries matter.
      const big = Buffer.alloc(3_500_000);
      for (let i = 0; i < big.length; i++) big[i] = (i * 7919) % 251 ^ (i >> 13);
      const src = treeOf({ ...APP, "assets/big.bin": big });
      const one = await pack({ source: { kind: "dir", dir: src }, concurrency: 1 });
      const four = await pack({ source: { kind: "dir", dir: src }, concurrency: 4 });
      expect(four.sha256).to.equal(one.sha256);
    });

    it("packages a directory and the commit of the same tree identically", async function () {
      const repo = scratch("package-repo");
      const commit = initRepo(repo, APP);
      const fromGit = await pack({ source: { kind: "git", repoDir: repo, commit } });
      const fromDir = await packDir(treeOf(APP));
      expect(fromGit.sha256).to.equal(fromDir.sha256);
    });
  });

  describe("archive format", function () {
    it("lists entries in byte order, owned by 0/0, dated 2000-01-01, with normalised modes", async function () {
      const src = treeOf(
        {
          "b.txt": "b",
          "B.txt": "B",
          "a/c": "c",
          "a-b/f": "f",
          "run.sh": { content: "#!/bin/sh\n", executable: true },
          "link": { symlink: "a/c" },
        },
        { fileMode: 0o664, dirMode: 0o775 },
      );
      const listing = listArchive((await packDir(src)).path);

      expect(listing.map((e) => e.name)).to.deep.equal(["B.txt", "a/", "a-b/", "a-b/f", "a/c", "b.txt", "link", "run.sh"]);
      expect(listing.map((e) => e.mode)).to.deep.equal([
        "-rw-r--r--",
        "drwxr-xr-x",
        "drwxr-xr-x",
        "-rw-r--r--",
        "-rw-r--r--",
        "-rw-r--r--",
        "lrwxrwxrwx",
        "-rwxr-xr-x",
      ]);
      for (const entry of listing) {
        expect(entry.owner, entry.name).to.equal("0/0");
        expect(entry.date, entry.name).to.equal("2000-01-01 00:00");
      }
      expect(listing.find((e) => e.name === "link")?.target).to.equal("a/c");
      expect(new Date(PACKAGE_MTIME * 1000).toISOString()).to.equal("2000-01-01T00:00:00.000Z");
    });

    it("extracts with the system tar to the same contents, modes, symlinks and long paths", async function () {
      const random = createHash("sha512");
      const chunks: Buffer[] = [];
      for (let i = 0; i < 40_000; i++) chunks.push(random.copy().update(String(i)).digest());
      const spec: TreeSpec = {
        ...APP,
        "empty.txt": "",
        "data/blob.bin": Buffer.concat(chunks), // ~2.5 MB: read in chunks rather than whole
        [longPath(150)]: "needs the ustar prefix\n",
        [longPath(300)]: "needs a PAX header\n",
        "links/far": { symlink: `../${longPath(140)}` },
        [longPath(140)]: "target of a long link\n",
        "unicode/naïve-café.txt": "é\n",
      };
      const src = treeOf(spec, { fileMode: 0o600 });
      const into = scratch("package-extract");
      extractArchive((await packDir(src)).path, into);

      for (const [name, node] of Object.entries(spec)) {
        const abs = path.join(into, name);
        if (typeof node === "object" && "symlink" in node) {
          expect(fs.readlinkSync(abs), name).to.equal(node.symlink);
          continue;
        }
        const executable = typeof node === "object" && !Buffer.isBuffer(node);
        const content = executable ? node.content : node;
        expect(fs.readFileSync(abs).equals(Buffer.from(content)), name).to.equal(true);
        expect(fs.statSync(abs).mode & 0o777, name).to.equal(executable ? 0o755 : 0o644);
      }
      expect(fs.statSync(path.join(into, "src", "lib")).mode & 0o777).to.equal(0o755);
      expect(fs.readFileSync(path.join(into, "links", "far"), "utf8")).to.equal("target of a long link\n");
    });

    it("writes a gzip header without name or time, marked Unix, around a whole number of tar records", async function () {
      const bytes = fs.readFileSync((await packDir(treeOf(APP))).path);
      expect([...bytes.subarray(0, 10)]).to.deep.equal([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3]);
      const tar = gunzipSync(bytes);
      expect(tar.length % 10240).to.equal(0);
      expect(tar.subarray(tar.length - 1024).every((b) => b === 0)).to.equal(true);
    });

    it("skips .git and node_modules at any depth", async function () {
      const src = treeOf({
        ...APP,
        ".git/HEAD": "ref: refs/heads/main\n",
        "node_modules/left-pad/index.js": "x",
        "packages/web/node_modules/react/index.js": "x",
        "packages/web/.git": "gitdir: ../../.git/modules/web\n",
        "packages/web/index.js": "web\n",
        ".gitignore": "node_modules/\n",
      });
      const names = listArchive((await packDir(src)).path).map((e) => e.name);
      expect(names).to.include.members([".gitignore", "packages/web/index.js"]);
      expect(names.filter((n) => n.includes("node_modules") || /(^|\/)\.git(\/|$)/.test(n))).to.deep.equal([]);
    });

    it("skips .env files at any depth by default; .zcpignore can put one back", async function () {
      const secrets = {
        ".env": "DATABASE_PASSWORD=hunter2\n",
        ".env.production": "API_TOKEN=abc\n",
        "services/api/.env.local": "X=1\n",
        ".env.example": "DATABASE_PASSWORD=\n",
        "src/env.ts": "export const env = process.env;\n",
      };
      const plain = listArchive((await packDir(treeOf({ ...APP, ...secrets }))).path).map((e) => e.name);
      expect(plain.filter((n) => /(^|\/)\.env/.test(n))).to.deep.equal([]);
      expect(plain).to.include("src/env.ts");

      const withExample = listArchive((await packDir(treeOf({ ...APP, ...secrets, ".zcpignore": "!.env.example\n" }))).path).map((e) => e.name);
      expect(withExample.filter((n) => /(^|\/)\.env/.test(n))).to.deep.equal([".env.example"]);
    });

    it("honours .zcpignore in gitignore syntax, identically for a directory and its commit", async function () {
      const spec: TreeSpec = {
        ...APP,
        ".zcpignore": "# build output and local notes\n*.log\n!keep.log\n/docs/\ntmp/\n**/fixtures/*.bin\n",
        "debug.log": "x",
        "src/keep.log": "kept\n",
        "docs/guide.md": "# guide\n",
        "src/docs/inner.md": "not anchored: kept\n",
        "tmp/a/b.txt": "x",
        "src/tmp/c.txt": "x",
        "test/fixtures/blob.bin": "x",
        "test/fixtures/data.json": "{}\n",
      };
      const fromDir = await packDir(treeOf(spec));
      const names = listArchive(fromDir.path).map((e) => e.name).filter((n) => !n.endsWith("/"));
      expect(names).to.include.members([".zcpignore", "src/keep.log", "src/docs/inner.md", "test/fixtures/data.json", "src/server.js"]);
      for (const dropped of ["debug.log", "docs/guide.md", "tmp/a/b.txt", "src/tmp/c.txt", "test/fixtures/blob.bin"]) {
        expect(names, dropped).not.to.include(dropped);
      }
      const repo = scratch("package-repo");
      const commit = initRepo(repo, spec);
      const fromGit = await pack({ source: { kind: "git", repoDir: repo, commit } });
      expect(fromGit.sha256).to.equal(fromDir.sha256);
    });

    it("adds a reserved tree and a manifest of every other file's sha256, and refuses a source that uses the reserved path", async function () {
      const deps = treeOf({ "wheels/dep-1.0-py3-none-any.whl": "wheel bytes", "npm-cache/index": "cache" });
      const manifestOf = (files: readonly { path: string; sha256: string }[]): string => JSON.stringify(files.map((f) => [f.path, f.sha256]));
      const src = treeOf(APP);
      const opts = { reservedTree: { root: ".zcp", dir: deps }, manifest: { path: ".zcp/manifest.json", render: manifestOf } };
      const result = await packDir(src, opts);
      expect((await packDir(src, opts)).sha256).to.equal(result.sha256);
      const into = scratch("package-extract");
      extractArchive(result.path, into);
      expect(fs.readFileSync(path.join(into, ".zcp/wheels/dep-1.0-py3-none-any.whl"), "utf8")).to.equal("wheel bytes");
      const manifest = JSON.parse(fs.readFileSync(path.join(into, ".zcp/manifest.json"), "utf8")) as [string, string][];
      const sha = (rel: string): string => createHash("sha256").update(fs.readFileSync(path.join(into, rel))).digest("hex");
      expect(manifest.map(([p]) => p)).to.include.members([".zcp/wheels/dep-1.0-py3-none-any.whl", "src/server.js", "README.md"]);
      expect(manifest.map(([p]) => p)).not.to.include(".zcp/manifest.json");
      for (const [rel, digest] of manifest) if (rel !== "current-config") expect(digest, rel).to.equal(sha(rel));

      const clash = await rejection(packDir(treeOf({ ...APP, ".zcp/manifest.json": "forged" }), opts));
      expect(clash.field).to.equal("--source");
      expect(clash.message).to.match(/"\.zcp" is reserved/);
    });

    it("adds extra files such as VERSION, replacing a source file of the same path", async function () {
      const src = treeOf({ ...APP, VERSION: "placeholder\n" });
      const result = await packDir(src, { extraFiles: { VERSION: "v1\n", "meta/build.txt": "ci\n" } });
      expect(result.files).to.equal(8);
      const listing = listArchive(result.path);
      expect(listing.find((e) => e.name === "VERSION")).to.include({ mode: "-rw-r--r--", size: 3 });
      expect(listing.map((e) => e.name)).to.include.members(["meta/", "meta/build.txt"]);
      const into = scratch("package-extract");
      extractArchive(result.path, into);
      expect(fs.readFileSync(path.join(into, "VERSION"), "utf8")).to.equal("v1\n");
      expect(fs.readFileSync(path.join(src, "VERSION"), "utf8")).to.equal("placeholder\n");
    });

    it("refuses extra files that escape the archive or clash with a directory", async function () {
      const src = treeOf(APP);
      const escaping = await rejection(packDir(src, { extraFiles: { "../VERSION": "v1\n" } }));
      expect(escaping.field).to.equal('extraFiles["../VERSION"]');
      const absolute = await rejection(packDir(src, { extraFiles: { "/etc/VERSION": "v1\n" } }));
      expect(absolute.field).to.equal('extraFiles["/etc/VERSION"]');
      const clash = await rejection(packDir(src, { extraFiles: { src: "v1\n" } }));
      expect(clash.message).to.match(/clashes with the directory/);
    });
  });

  describe("git source", function () {
    it("takes the committed content, modes and symlinks, not the work tree", async function () {
      const repo = scratch("package-repo");
      const commit = initRepo(repo, APP);
      fs.writeFileSync(path.join(repo, "src/server.js"), "uncommitted edit\n");
      fs.writeFileSync(path.join(repo, "untracked.txt"), "not in the commit\n");
      fs.rmSync(path.join(repo, "README.md"));
      fs.chmodSync(path.join(repo, "bin/start"), 0o644);

      const result = await pack({ source: { kind: "git", repoDir: repo, commit: commit.slice(0, 10) } });
      expect(result.commit).to.equal(commit);
      expect(result.files).to.equal(6);
      const into = scratch("package-extract");
      extractArchive(result.path, into);
      expect(fs.readFileSync(path.join(into, "src/server.js"), "utf8")).to.equal("console.log('up');\n");
      expect(fs.readFileSync(path.join(into, "README.md"), "utf8")).to.equal("# app\n");
      expect(fs.existsSync(path.join(into, "untracked.txt"))).to.equal(false);
      expect(fs.statSync(path.join(into, "bin/start")).mode & 0o777).to.equal(0o755);
      expect(fs.readlinkSync(path.join(into, "current-config"))).to.equal("config/app.json");
    });

    it("packages an older commit when asked", async function () {
      const repo = scratch("package-repo");
      const first = initRepo(repo, APP);
      fs.writeFileSync(path.join(repo, "src/server.js"), "second version\n");
      git(repo, "commit", "--quiet", "-am", "second");
      const older = await pack({ source: { kind: "git", repoDir: repo, commit: first } });
      const head = await pack({ source: { kind: "git", repoDir: repo, commit: "HEAD" } });
      expect(older.commit).to.equal(first);
      expect(head.sha256).not.to.equal(older.sha256);
      const into = scratch("package-extract");
      extractArchive(older.path, into);
      expect(fs.readFileSync(path.join(into, "src/server.js"), "utf8")).to.equal("console.log('up');\n");
    });

    it("packages one directory of a commit as the archive root when given a subdir", async function () {
      const repo = scratch("package-repo");
      const appTree = Object.fromEntries(Object.entries(APP).map(([name, node]) => [`examples/app/${name}`, node]));
      const commit = initRepo(repo, { ...appTree, "infra/index.ts": "export {};\n" });
      const sub = await pack({ source: { kind: "git", repoDir: repo, commit, subdir: "examples/app/" }, extraFiles: { VERSION: "v2\n" } });
      const dir = await packDir(treeOf(APP), { extraFiles: { VERSION: "v2\n" } });
      expect(sub.sha256).to.equal(dir.sha256);
      expect(sub.commit).to.equal(commit);

      const missing = await rejection(pack({ source: { kind: "git", repoDir: repo, commit, subdir: "examples/nope" } }));
      expect(missing.field).to.equal("subdir");
      const escaping = await rejection(pack({ source: { kind: "git", repoDir: repo, commit, subdir: "../elsewhere" } }));
      expect(escaping.field).to.equal("subdir");
    });

    it("keeps git's output when git has finished before the first blob is wanted", async function () {
      // A large extra file sorted first keeps the writer busy compressing while git answers every
      // request and exits; its output must still be there when the first blob is read.
      const repo = scratch("package-repo");
      const commit = initRepo(repo, APP);
      const slow: string[] = [];
      for (let i = 0; slow.length < 60_000; i++) slow.push(createHash("sha1").update(String(i)).digest("hex"));
      const extraFiles = { "0-first.txt": slow.join("\n") };
      const fromGit = await pack({ source: { kind: "git", repoDir: repo, commit }, extraFiles, concurrency: 1 });
      const fromDir = await packDir(treeOf(APP), { extraFiles });
      expect(fromGit.sha256).to.equal(fromDir.sha256);
    });

    it("refuses a name that is not a commit, and option-like names", async function () {
      const repo = scratch("package-repo");
      initRepo(repo, APP);
      const missing = await rejection(pack({ source: { kind: "git", repoDir: repo, commit: "no-such-branch" } }));
      expect(missing.field).to.equal("commit");
      const optionLike = await rejection(pack({ source: { kind: "git", repoDir: repo, commit: "--output=/tmp/x" } }));
      expect(optionLike.field).to.equal("commit");
    });

    it("refuses a committed symlink that points outside the tree", async function () {
      const repo = scratch("package-repo");
      const commit = initRepo(repo, { ...APP, "secrets": { symlink: "../../home/.aws/credentials" } });
      const err = await rejection(pack({ source: { kind: "git", repoDir: repo, commit } }));
      expect(err.field).to.equal("commit");
      expect(err.message).to.match(/"secrets" -> "\.\.\/\.\.\/home\/\.aws\/credentials" points outside the tree/);
    });
  });

  describe("refusals", function () {
    it("refuses an absolute symlink target, naming --source", async function () {
      const err = await rejection(packDir(treeOf({ ...APP, "etc-passwd": { symlink: "/etc/passwd" } })));
      expect(err.field).to.equal("--source");
      expect(err.message).to.match(/^--source: symlink "etc-passwd" -> "\/etc\/passwd" is absolute/);
    });

    it("refuses a relative symlink that climbs out of the tree", async function () {
      const err = await rejection(packDir(treeOf({ ...APP, "src/up": { symlink: "../../outside" } })));
      expect(err.message).to.match(/"src\/up" -> "\.\.\/\.\.\/outside" points outside the tree/);
    });

    it("refuses symlinks that each look contained but escape together", async function () {
      // a/b/root -> ../.. is the tree's root, so a/b/root/.. is its parent.
      const err = await rejection(
        packDir(treeOf({ ...APP, "a/b/root": { symlink: "../.." }, "a/b/escape": { symlink: "root/.." } })),
      );
      expect(err.message).to.match(/"a\/b\/escape" -> "root\/\.\." points outside the tree/);
    });

    it("keeps symlinks that stay inside, through other symlinks or to paths not shipped", async function () {
      const result = await packDir(
        treeOf({
          ...APP,
          "lib": { symlink: "src/lib" },
          "via-lib": { symlink: "lib/../../README.md" },
          "logs": { symlink: "shared/logs" },
        }),
      );
      const links = listArchive(result.path).filter((e) => e.mode.startsWith("l"));
      expect(links.map((e) => [e.name, e.target])).to.deep.equal([
        ["current-config", "config/app.json"],
        ["lib", "src/lib"],
        ["logs", "shared/logs"],
        ["via-lib", "lib/../../README.md"],
      ]);
    });

    it("refuses a file that is neither regular, directory nor symlink", async function () {
      const src = treeOf(APP);
      const server = net.createServer();
      await new Promise<void>((resolve) => server.listen(path.join(src, "app.sock"), resolve));
      try {
        const err = await rejection(packDir(src));
        expect(err.message).to.equal('--source: "app.sock" is not a regular file, directory or symlink');
      } finally {
        await new Promise((resolve) => server.close(resolve));
      }
    });

    it("refuses a source directory that does not exist", async function () {
      const err = await rejection(packDir(path.join(scratch("package-src"), "missing")));
      expect(err.field).to.equal("--source");
    });

    it("writes the archive outside the source and refuses an output directory inside it", async function () {
      const src = treeOf(APP);
      const defaulted = await packageSource({ source: { kind: "dir", dir: src } });
      cleanup.push(path.dirname(defaulted.path));
      expect(path.relative(fs.realpathSync(src), defaulted.path).startsWith("..")).to.equal(true);

      const err = await rejection(packageSource({ source: { kind: "dir", dir: src }, outDir: path.join(src, "dist") }));
      expect(err.field).to.equal("outDir");
      expect(fs.readdirSync(src).sort()).to.deep.equal(["README.md", "bin", "config", "current-config", "src"]);
    });
  });
});
