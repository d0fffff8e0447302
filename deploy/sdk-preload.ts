/**
 * Loaded before @pulumi/pulumi in every Node.js process of a release: first thing in the
 * runner (deploy/cli.ts), and through `NODE_OPTIONS=--require` in the processes the engine
 * starts (the dynamic-provider host; runner.ts, engineEnvFor).
 *
 * Any part of the SDK loads its runtime index, and that index loads the closure serializer
 * with TypeScript and npm's Arborist (for the code paths of serialized functions): about 0.2 s
 * of every such process's start, with Node's compile cache (docs/benchmarks.md). A release uses
 * neither: its providers are loaded by path (providers/common.ts) and nothing else serializes
 * a function. So both modules are put in the module cache as stand-ins that load the real
 * module the first time one of its properties is read. Code that uses them gets them, later.
 */
import * as fs from "node:fs";
import Module from "node:module";
import * as path from "node:path";

/** The SDK's module requests that wait for first use, and how the SDK imports each. */
const DEFERRED: readonly { request: string; importedAs: "value" | "namespace" }[] = [
  // runtime/closure/*.js and tsutils.js: `const ts = require("../../typescript-shim")`, whose
  // module.exports is `require("typescript")`; only ever read as ts.X.
  { request: "typescript", importedAs: "value" },
  // runtime/closure/codePaths.js: `__importStar(require("@npmcli/arborist"))`, read as
  // arborist.Arborist. __importStar hands back a module marked __esModule as it is, instead
  // of copying (and so reading) every export.
  { request: "@npmcli/arborist", importedAs: "namespace" },
];

type CachedModule = NodeJS.Module & { loaded: boolean };

/** Files whose stand-in is in place and whose real module has not been loaded yet. */
const pending = new Set<string>();

/** A module-cache entry for `file` whose exports load the real module on first use. */
function standIn(file: string, importedAs: "value" | "namespace"): CachedModule {
  let real: Record<PropertyKey, unknown> | undefined;
  const load = (): Record<PropertyKey, unknown> => {
    if (!real) {
      delete require.cache[file];
      pending.delete(file);
      real = require(file) as Record<PropertyKey, unknown>;
    }
    return real;
  };
  const exports = new Proxy(Object.create(null) as Record<PropertyKey, unknown>, {
    get: (_t, key) => (importedAs === "namespace" && key === "__esModule" ? true : load()[key]),
    has: (_t, key) => key in load(),
    ownKeys: () => Reflect.ownKeys(load()).filter((k) => k !== "prototype"),
    getOwnPropertyDescriptor: (_t, key) => {
      const d = Reflect.getOwnPropertyDescriptor(load(), key);
      return d ? { ...d, configurable: true } : undefined;
    },
  });
  const mod = new Module(file) as CachedModule;
  mod.filename = file;
  mod.exports = exports;
  mod.loaded = true;
  return mod;
}

/**
 * Puts the stand-ins in the module cache, for the copies of the modules that the
 * @pulumi/pulumi next to zcp would load. Does nothing when the SDK, or a module, is not found
 * there, or the module is loaded already.
 */
function deferSdkOnlyModules(): void {
  let sdkDir: string;
  try {
    sdkDir = path.dirname(require.resolve("@pulumi/pulumi/package.json", { paths: [__dirname] }));
  } catch {
    return;
  }
  for (const { request, importedAs } of DEFERRED) {
    let file: string;
    try {
      file = fs.realpathSync(require.resolve(request, { paths: [sdkDir] }));
    } catch {
      continue;
    }
    if (require.cache[file]) continue;
    require.cache[file] = standIn(file, importedAs);
    pending.add(file);
  }
}

/** The deferred modules not loaded so far (what this process was spared). */
export function stillDeferred(): string[] {
  return [...pending];
}

deferSdkOnlyModules();
