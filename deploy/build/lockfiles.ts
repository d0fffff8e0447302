/**
 * The lockfiles a build resolves dependencies from, and the rules that make the result
 * hermetic: every dependency pinned to exact bytes by a hash, and nothing in a lockfile that
 * would send an instance to the network when it installs offline.
 *
 * Python: `requirements.txt` in pip's requirements-file format (pip docs, "Requirements File
 * Format"): one requirement per line, `\` continues a line, `#` starts a comment, options
 * such as `--hash=sha256:…`, `--find-links` and `--no-index` may appear. Hash-checking mode
 * (pip docs, "Secure installs": `--require-hashes`) needs every requirement pinned with `==`
 * and at least one `--hash`; pip then also refuses any dependency that is not listed.
 *
 * Node: `package-lock.json` with `lockfileVersion` 2 or 3 (npm docs, "package-lock.json"):
 * each entry of `packages` but the root carries `resolved` and `integrity` (the Subresource
 * Integrity string of its tarball), except links to folders of the project (`link: true`) and
 * packages bundled inside another (`inBundle: true`), whose bytes come with their parent.
 */
import { ConfigError } from "../../shared/errors.js";

export interface PythonLock {
  file: "requirements.txt";
  text: string;
  /** `name==version` of each requirement, in file order. */
  requirements: string[];
}

export interface NodeLock {
  file: "package-lock.json";
  text: string;
  packageJson: string;
  /** Packages an install with `--omit=dev` needs, with their SRI integrity. */
  packages: { path: string; version: string; integrity: string; optional: boolean }[];
}

/** Options that make pip look at an index or a remote page: refused in a build's lockfile. */
const PIP_NETWORK_OPTIONS = ["-i", "--index-url", "--extra-index-url", "--trusted-host"];
/** Options that pull in other files, whose hashes this check could not see. */
const PIP_INCLUDE_OPTIONS = ["-r", "--requirement", "-c", "--constraint", "-e", "--editable"];

/** Checks a requirements.txt for a hermetic build; the error names the file and the line. */
export function checkRequirements(text: string): PythonLock {
  const file = "requirements.txt";
  const requirements: string[] = [];
  const logical = joinContinuations(text);
  for (const { line, number } of logical) {
    const content = line.replace(/(^|\s)#.*$/, "").replace(/--hash\s+/g, "--hash=").trim();
    if (content === "") continue;
    const where = `${file}: line ${number}`;
    const words = content.split(/\s+/);
    const first = words[0] ?? "";
    if (first.startsWith("-")) {
      const option = first.split("=")[0] ?? first;
      if (PIP_NETWORK_OPTIONS.includes(option)) {
        throw new ConfigError(where, `${option} names a package index; a hermetic build installs only what it resolved, so remove it (zcp build downloads through pip's own configuration)`);
      }
      if (PIP_INCLUDE_OPTIONS.includes(option)) {
        throw new ConfigError(where, `${option} is not supported in a hermetic build; list every requirement, pinned and hashed, in requirements.txt itself`);
      }
      if (option === "-f" || option === "--find-links") {
        const target = first.includes("=") ? first.slice(first.indexOf("=") + 1) : (words[1] ?? "");
        if (/^[a-z][a-z0-9+.-]*:\/\//i.test(target) && !target.startsWith("file://")) {
          throw new ConfigError(where, `${option} ${target} would make the instance reach the network; keep wheels in the source (a relative directory) or let zcp build download them`);
        }
      }
      continue;
    }
    const spec = words.filter((w) => !w.startsWith("--hash"));
    const hashes = words.filter((w) => w.startsWith("--hash"));
    const requirement = spec[0] ?? "";
    if (/^(https?|git\+|file):/i.test(requirement) || spec.some((w) => w.includes("@"))) {
      throw new ConfigError(where, `"${requirement}" is a direct reference; pin a released version with == and its --hash`);
    }
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9,._-]+\])?==[^=\s;]+/.test(spec.join(" "))) {
      throw new ConfigError(where, `"${content}" is not pinned with ==; a lockfile pins every dependency to one version`);
    }
    if (hashes.length === 0 || !hashes.every((h) => /^--hash=sha(256|384|512):[0-9a-f]{64,128}$/.test(h))) {
      throw new ConfigError(
        where,
        `"${requirement}" has no --hash=sha256:…; a lockfile without hashes is refused (generate one with \`pip-compile --generate-hashes\` or \`pip hash\`)`,
      );
    }
    requirements.push(requirement);
  }
  return { file, text, requirements };
}

function joinContinuations(text: string): { line: string; number: number }[] {
  const out: { line: string; number: number }[] = [];
  let pending: { line: string; number: number } | undefined;
  text.split(/\r?\n/).forEach((raw, i) => {
    const continued = /\\$/.test(raw);
    const piece = continued ? raw.slice(0, -1) : raw;
    pending = pending ? { line: `${pending.line} ${piece}`, number: pending.number } : { line: piece, number: i + 1 };
    if (!continued) {
      out.push(pending);
      pending = undefined;
    }
  });
  if (pending) out.push(pending);
  return out;
}

interface LockEntry {
  version?: unknown;
  resolved?: unknown;
  integrity?: unknown;
  link?: unknown;
  inBundle?: unknown;
  dev?: unknown;
  optional?: unknown;
  devOptional?: unknown;
}

/** Checks a package-lock.json for a hermetic build; the error names the file and the package. */
export function checkPackageLock(text: string, packageJson: string | undefined): NodeLock {
  const file = "package-lock.json";
  if (packageJson === undefined) throw new ConfigError(file, "has no package.json beside it; npm ci needs both");
  let lock: { lockfileVersion?: unknown; packages?: Record<string, LockEntry> };
  try {
    lock = JSON.parse(text) as typeof lock;
  } catch (err) {
    throw new ConfigError(file, `is not JSON: ${(err as Error).message}`);
  }
  if (lock.lockfileVersion !== 2 && lock.lockfileVersion !== 3) {
    throw new ConfigError(file, `lockfileVersion must be 2 or 3 (npm 7 or later), got ${JSON.stringify(lock.lockfileVersion)}`);
  }
  if (typeof lock.packages !== "object" || lock.packages === null) throw new ConfigError(file, 'has no "packages" map');
  const packages: NodeLock["packages"] = [];
  for (const [at, entry] of Object.entries(lock.packages)) {
    if (at === "" || entry.link === true || entry.inBundle === true) continue;
    if (entry.dev === true) continue; // installed with --omit=dev: never
    const where = `${file}: "${at}"`;
    if (typeof entry.integrity !== "string" || !/^sha(256|384|512)-[A-Za-z0-9+/=]+$/.test(entry.integrity.split(" ")[0] ?? "")) {
      throw new ConfigError(where, "has no integrity hash; a lockfile without hashes is refused (regenerate it with a current npm: `npm install --package-lock-only`)");
    }
    if (typeof entry.resolved !== "string" || !/^https:\/\//.test(entry.resolved)) {
      throw new ConfigError(where, `must be resolved from an https:// registry URL, got ${JSON.stringify(entry.resolved ?? null)}`);
    }
    packages.push({
      path: at,
      version: typeof entry.version === "string" ? entry.version : "",
      integrity: entry.integrity,
      optional: entry.optional === true || entry.devOptional === true,
    });
  }
  return { file, text, packageJson, packages };
}
