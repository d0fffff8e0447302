/**
 * What every release-stack provider shares.
 *
 * The engine runs dynamic providers in its own provider host and re-creates each provider
 * object there from serialized source. Serializing the step implementations (and through them
 * the AWS SDK and zod) by value would be slow and brittle, so each provider method loads its
 * implementation module by absolute path at call time: the provider captures a path string
 * and nothing else, and every SDK client is constructed inside the call.
 */
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";

/** Absolute path of a compiled module under deploy/steps/. */
export function stepModulePath(name: string): string {
  return path.join(__dirname, "..", "steps", `${name}.js`);
}

/** Names the keys whose values differ between two input objects (shallow, JSON compared). */
export function changedKeys(olds: Record<string, unknown>, news: Record<string, unknown>, keys: readonly string[]): string[] {
  return keys.filter((k) => JSON.stringify(olds[k]) !== JSON.stringify(news[k]));
}

/**
 * The `__provider` input of a release step: the source of a CommonJS module whose `handler()`
 * returns the provider exported as `exportName` by the compiled module at `modulePath`.
 *
 * This is what the engine's dynamic-provider host runs: it loads the input's text as a module
 * and calls `handler()` once per distinct text (`getProvider` in @pulumi/pulumi's
 * cmd/dynamic-provider/index.js); the text a closure serializer produces is one way to write
 * that module, this line is another.
 */
export function providerModuleSource(modulePath: string, exportName: string): string {
  if (!path.isAbsolute(modulePath)) throw new Error(`provider module path ${JSON.stringify(modulePath)} is not absolute`);
  if (!/^[A-Za-z_$][A-Za-z0-9_$]*$/.test(exportName)) throw new Error(`provider export name ${JSON.stringify(exportName)} is not an identifier`);
  return `exports.handler = function () { return require(${JSON.stringify(modulePath)})[${JSON.stringify(exportName)}]; };\n`;
}

/**
 * A release step's resource: a dynamic resource whose provider the provider host loads from
 * its compiled module by path.
 *
 * `pulumi.dynamic.Resource` would serialize the provider object with Pulumi's closure
 * serializer, which loads every Node.js builtin module, opens an inspector session and parses
 * each method with TypeScript: 0.48 s for the first of the five providers and 0.65 s for all
 * five, on the program's only thread while the release waits (docs/benchmarks.md). The
 * providers here are exports of compiled modules that capture a path and nothing else, so the
 * module the host needs is one line (`providerModuleSource`). The type token is the one
 * `pulumi.dynamic.Resource` gives, `pulumi-nodejs:dynamic/zcp:TYPE`, so stacks made before
 * keep their resources.
 */
export class StepResource extends pulumi.CustomResource {
  constructor(
    /** The compiled module exporting the provider (the subclass's own `__filename`). */
    providerModule: string,
    exportName: string,
    type: string,
    name: string,
    props: pulumi.Inputs,
    opts?: pulumi.CustomResourceOptions,
  ) {
    const provider = (require(providerModule) as Record<string, Partial<pulumi.dynamic.ResourceProvider> | undefined>)[exportName];
    if (typeof provider?.create !== "function") throw new Error(`${providerModule} exports no dynamic provider named ${exportName}`);
    if ("__provider" in props) throw new Error(`${type} ${name}: the input __provider is the engine's own`);
    super(`pulumi-nodejs:dynamic/zcp:${type}`, name, { ...props, __provider: providerModuleSource(providerModule, exportName) }, opts);
  }
}
