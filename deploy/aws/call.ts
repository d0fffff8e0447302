/**
 * How every executor in `deploy/` sends one AWS request: retried on throttling and transient
 * failures through `shared/retry.ts`, and wrapped with the step and target when it still
 * fails, so a user reads `SSM deploy to i-0abc failed: AccessDenied …`.
 */
import { StepError } from "../../shared/errors.js";
import { isThrottleOrTransient, retry, type RetryOptions } from "../../shared/retry.js";

/**
 * The clock and the progress sink of an executor. Tests pass an instant `sleep` and a fixed
 * `random`; production leaves everything out.
 */
export type Pacing = Pick<RetryOptions, "sleep" | "random" | "now" | "log">;

/** Retry budget for a single request, on top of the SDK's own adaptive retry. */
const CALL_RETRY = { maxAttempts: 6, initialDelayMs: 500, maxDelayMs: 10_000 } as const;

/** Only the fields that are set, so `exactOptionalPropertyTypes` accepts the spread. */
export function pacingOptions(p: Pacing): Pacing {
  const out: Pacing = {};
  if (p.sleep) out.sleep = p.sleep;
  if (p.random) out.random = p.random;
  if (p.now) out.now = p.now;
  if (p.log) out.log = p.log;
  return out;
}

/**
 * Sends one request. `step` and `target` read as a sentence: `("SSM deploy to", "i-0abc")`.
 */
export async function awsCall<T>(step: string, target: string, send: () => Promise<T>, pacing: Pacing = {}): Promise<T> {
  try {
    return await retry(() => send(), isThrottleOrTransient, {
      label: `${step} ${target}`.trim(),
      ...CALL_RETRY,
      ...pacingOptions(pacing),
    });
  } catch (err) {
    throw new StepError(step, target, err);
  }
}

/** The AWS error name (`NotFound`, `PreconditionFailed`, …), looking through a `StepError`. */
export function awsErrorName(err: unknown): string | undefined {
  const inner = err instanceof StepError ? err.cause : err;
  const name = (inner as { name?: unknown } | undefined)?.name;
  const code = (inner as { Code?: unknown } | undefined)?.Code;
  return typeof code === "string" && code ? code : typeof name === "string" ? name : undefined;
}

/** The HTTP status of an AWS error, looking through a `StepError`. */
export function awsHttpStatus(err: unknown): number | undefined {
  const inner = err instanceof StepError ? err.cause : err;
  return (inner as { $metadata?: { httpStatusCode?: number } } | undefined)?.$metadata?.httpStatusCode;
}

/** Tag list (EC2 shape) to a plain record. */
export function tagRecord(tags: readonly { Key?: string | undefined; Value?: string | undefined }[] | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const t of tags ?? []) if (t.Key !== undefined) out[t.Key] = t.Value ?? "";
  return out;
}

/** Plain record to an EC2 tag list, keys sorted so the request is deterministic. */
export function tagList(tags: Record<string, string>): { Key: string; Value: string }[] {
  return Object.keys(tags)
    .sort()
    .map((Key) => ({ Key, Value: tags[Key] ?? "" }));
}

/** A short form of a long id list for messages: `i-1, i-2, i-3 (+47 more)`. */
export function describeIds(ids: readonly string[], shown = 3): string {
  if (ids.length <= shown) return ids.join(", ");
  return `${ids.slice(0, shown).join(", ")} (+${ids.length - shown} more)`;
}
