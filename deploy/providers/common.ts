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

/** Absolute path of a compiled module under deploy/steps/. */
export function stepModulePath(name: string): string {
  return path.join(__dirname, "..", "steps", `${name}.js`);
}

/** Names the keys whose values differ between two input objects (shallow, JSON compared). */
export function changedKeys(olds: Record<string, unknown>, news: Record<string, unknown>, keys: readonly string[]): string[] {
  return keys.filter((k) => JSON.stringify(olds[k]) !== JSON.stringify(news[k]));
}
