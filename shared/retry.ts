import { DeadlineExceededError } from "./errors.js";

/**
 * The one helper for polling and retrying: a label, a deadline, bounded exponential backoff
 * with full jitter, and an injectable clock so tests run instantly.
 */
export interface RetryOptions {
  /** Shown in progress lines: `AmiAvailable: attempt 3/20 …`. */
  label: string;
  /** Give up after this many attempts. @default 20 */
  maxAttempts?: number;
  /** Give up once this much time has passed (ms). @default no deadline */
  deadlineMs?: number;
  /** First delay (ms). @default 1000 */
  initialDelayMs?: number;
  /** Largest delay (ms). @default 30000 */
  maxDelayMs?: number;
  /** Random source in [0,1); full jitter draws the delay uniformly below the cap. @default Math.random */
  random?: () => number;
  /** Sleep implementation. @default setTimeout */
  sleep?: (ms: number) => Promise<void>;
  /** Clock. @default Date.now */
  now?: () => number;
  /** Progress sink. @default no output */
  log?: (line: string) => void;
}

export const realSleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The delay before attempt `attempt` (1-based, after a failure): capped exponential, full jitter. */
export function backoffDelay(attempt: number, initialMs: number, maxMs: number, random: () => number): number {
  const cap = Math.min(maxMs, initialMs * 2 ** Math.max(0, attempt - 1));
  // Never below a tenth of the cap: pure full jitter can draw ~0 and hammer the API.
  return Math.round(cap / 10 + random() * (cap - cap / 10));
}

export type PollResult<T> = { done: true; value: T } | { done: false; status?: string };

/**
 * Polls `check` until it reports done, the attempts run out or the deadline passes.
 * Errors thrown by `check` are not retried here: wrap with `retry` for that.
 */
export async function poll<T>(check: (attempt: number) => Promise<PollResult<T>>, opts: RetryOptions): Promise<T> {
  const o = withDefaults(opts);
  const start = o.now();
  for (let attempt = 1; ; attempt++) {
    const r = await check(attempt);
    if (r.done) return r.value;
    const elapsed = o.now() - start;
    o.log(`${o.label}: attempt ${attempt}/${o.maxAttempts}${r.status ? ` ${r.status}` : ""} (${Math.round(elapsed / 1000)}s)`);
    if (attempt >= o.maxAttempts) {
      throw new DeadlineExceededError(`${o.label}: not done after ${attempt} attempts (${Math.round(elapsed / 1000)}s)`);
    }
    const delay = backoffDelay(attempt, o.initialDelayMs, o.maxDelayMs, o.random);
    if (o.deadlineMs !== undefined && elapsed + delay > o.deadlineMs) {
      throw new DeadlineExceededError(`${o.label}: deadline of ${Math.round(o.deadlineMs / 1000)}s passed`);
    }
    await o.sleep(delay);
  }
}

/**
 * Runs `fn`, retrying when `isRetryable(err)` says so, with the same backoff as `poll`.
 */
export async function retry<T>(
  fn: (attempt: number) => Promise<T>,
  isRetryable: (err: unknown) => boolean,
  opts: RetryOptions,
): Promise<T> {
  const o = withDefaults(opts);
  const start = o.now();
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn(attempt);
    } catch (err) {
      const elapsed = o.now() - start;
      if (!isRetryable(err) || attempt >= o.maxAttempts) throw err;
      const delay = backoffDelay(attempt, o.initialDelayMs, o.maxDelayMs, o.random);
      if (o.deadlineMs !== undefined && elapsed + delay > o.deadlineMs) throw err;
      o.log(`${o.label}: attempt ${attempt}/${o.maxAttempts} failed (${(err as Error)?.name ?? "error"}), retrying in ${delay}ms`);
      await o.sleep(delay);
    }
  }
}

function withDefaults(opts: RetryOptions) {
  return {
    label: opts.label,
    maxAttempts: opts.maxAttempts ?? 20,
    deadlineMs: opts.deadlineMs,
    initialDelayMs: opts.initialDelayMs ?? 1000,
    maxDelayMs: opts.maxDelayMs ?? 30000,
    random: opts.random ?? Math.random,
    sleep: opts.sleep ?? realSleep,
    now: opts.now ?? Date.now,
    log: opts.log ?? (() => undefined),
  };
}

/** AWS error names that mean "slow down" or "try again": safe to retry. */
export function isThrottleOrTransient(err: unknown): boolean {
  const e = err as { name?: string; $retryable?: unknown; $metadata?: { httpStatusCode?: number } } | undefined;
  if (!e) return false;
  if (e.$retryable) return true;
  const name = e.name ?? "";
  if (/Throttl|TooManyRequests|RequestLimitExceeded|SlowDown|ServiceUnavailable|InternalError|RequestTimeout/i.test(name)) {
    return true;
  }
  if (/ECONNREFUSED|ECONNRESET|EPIPE|ETIMEDOUT|socket hang up/i.test(String((err as Error).message ?? ""))) return true;
  const status = e.$metadata?.httpStatusCode;
  return status === 429 || status === 500 || status === 502 || status === 503 || status === 504;
}
