/**
 * One validation rule per value, shared by the stack config schema (`shared/config.ts`) and
 * the command line (`deploy/cli-args.ts`): a canary or a batch means the same thing, and is
 * refused with the same words, whether it comes from `Pulumi.dev.yaml` or from `--batch`.
 */
import { z } from "zod";
import { ConfigError } from "./errors.js";
import { ENV_PATTERN, VERSION_PATTERN } from "./naming.js";

/** How a refused value is shown in a message: the value itself, or what kind of thing it was. */
export function show(value: unknown): string {
  if (value === undefined) return "nothing";
  if (Array.isArray(value)) return "a list";
  if (value !== null && typeof value === "object") return "an object";
  return JSON.stringify(value);
}

export const required = (what: string) => (iss: { input?: unknown }) =>
  iss.input === undefined ? "is required" : `must be ${what}, got ${show(iss.input)}`;

export function matching(re: RegExp | string, what: string) {
  const pattern = typeof re === "string" ? new RegExp(re) : re;
  return z.string({ error: required(what) }).regex(pattern, { error: (iss) => `must be ${what}, got ${show(iss.input)}` });
}

/** YAML, `pulumi config set --path` and the command line deliver numbers as strings; accept both. */
export function wholeNumber(min: number, max: number) {
  const error = (iss: { input?: unknown }) =>
    iss.input === undefined ? "is required" : `must be a whole number ${min}..${max}, got ${show(iss.input)}`;
  return z.preprocess(
    (v) => (typeof v === "string" && /^-?[0-9]+$/.test(v.trim()) ? Number(v) : v),
    z.int({ error }).min(min, { error }).max(max, { error }),
  );
}

/** A batch: a count of instances ("2", up to 99999) or a share of the fleet ("25%", 1..100%). */
export const BATCH_RE = /^(?:([1-9][0-9]{0,4})|([1-9][0-9]?|100)%)$/;

export const RULES = {
  /** A release version (tag or commit SHA); fixed by the CLI contract. */
  version: z
    .string({ error: required(`a version matching ${VERSION_PATTERN}`) })
    .regex(new RegExp(VERSION_PATTERN), { error: (iss) => `must match ${VERSION_PATTERN}, got ${show(iss.input)}` }),
  /** An environment name: `local` or a foundation stack (dev, prod, …). */
  environment: z
    .string({ error: required(`an environment name matching ${ENV_PATTERN}`) })
    .regex(new RegExp(ENV_PATTERN), { error: (iss) => `must match ${ENV_PATTERN}, got ${show(iss.input)}` }),
  /** Instances that get a release first; 0 skips the canary. */
  canary: wholeNumber(0, 100),
  batch: z
    .preprocess((v) => (typeof v === "number" ? String(v) : v), z.string({ error: required("a count or a percentage") }))
    .refine((v) => BATCH_RE.test(v), { error: (iss) => `must be 1..100% or a count, got ${show(iss.input)}` }),
} as const;

/**
 * Checks one value against its rule; a refusal is a ConfigError naming `field` (`--batch`,
 * `zcp:deploy.batch`) with the rule's own words.
 */
export function checkValue<S extends z.ZodType>(field: string, rule: S, value: unknown): z.output<S> {
  const result = rule.safeParse(value, { reportInput: true });
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  throw new ConfigError(field, issue?.message ?? `is invalid, got ${show(value)}`);
}
