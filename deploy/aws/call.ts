/**
 * How every executor in `deploy/` sends one AWS request: once, through a client whose SDK
 * retry strategy (adaptive: client-side rate limiting plus backoff on throttling and transient
 * errors, `deploy/aws/clients.ts`) is the only per-request retry, and wrapped with the step and
 * target when it still fails, so a user reads `SSM deploy to i-0abc failed: AccessDenied …`.
 *
 * One retry layer per request, never two:
 *  - ordinary calls: the SDK's adaptive retry, and nothing here. A second loop around it
 *    multiplied the sends of one throttled request (6 × 5 = 30), deepening the storm it met;
 *  - SendCommand: zcp's token-checked resend (`deploy/transports/ssm.ts`), through a client
 *    with the SDK's retries off, because a blind resend after a lost response starts a second
 *    command;
 *  - waiting for a state (a command to finish, an image to become available): the polling
 *    loops (`poll` in shared/retry.ts), which read a throttled status call as "no news this
 *    round" (`isThrottledOrTransient`) and ask again at their own cadence.
 */
import { StepError } from "../../shared/errors.js";
import { isThrottleOrTransient, type RetryOptions } from "../../shared/retry.js";

/**
 * The clock and the progress sink of an executor. Tests pass an instant `sleep` and a fixed
 * `random`; production leaves everything out.
 */
export type Pacing = Pick<RetryOptions, "sleep" | "random" | "now" | "log">;

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
 * `_pacing` keeps the callers' signature; a single send never sleeps (the SDK's retry
 * strategy does its own waiting).
 */
export async function awsCall<T>(step: string, target: string, send: () => Promise<T>, _pacing: Pacing = {}): Promise<T> {
  try {
    return await send();
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

/**
 * Throttling or a transient failure that outlasted the SDK's retries, looking through a
 * `StepError`. A polling loop reads it as "no news this round" and asks again at its own
 * cadence; anywhere else it is a failure like any other.
 */
export function isThrottledOrTransient(err: unknown): boolean {
  return isThrottleOrTransient(err instanceof StepError ? err.cause : err);
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
