/**
 * A bounded stream of HTTP requests to a loopback URL, for the zero-downtime test and
 * benchmark: a few workers, each sending one GET after another with a pause between, until
 * told to stop, the request budget is spent or the time limit passes, whichever comes first.
 * Every answer other than 200, and every connection error or timeout, counts as failed.
 */
import { performance } from "node:perf_hooks";

export interface LoadOptions {
  /** An http://127.0.0.1 or http://localhost URL; nothing else is accepted. */
  url: string;
  /** Requests in flight at once. @default 4 */
  concurrency?: number;
  /** Pause of each worker between its requests, ms. @default 25 */
  pauseMs?: number;
  /** Stop after this many requests in all. @default 20000 */
  maxRequests?: number;
  /** Stop after this long, ms. @default 300000 */
  maxMs?: number;
  /** Per-request timeout, ms. @default 5000 */
  requestTimeoutMs?: number;
}

export interface LoadResult {
  sent: number;
  ok: number;
  failed: number;
  /** The first failures, for messages. */
  failures: { atMs: number; error: string }[];
  /** Answers per version the app reported, in order of first appearance. */
  versions: Map<string, number>;
  /** Version of the last successful answer. */
  lastVersion: string | undefined;
  durationMs: number;
}

export interface RunningLoad {
  /** Stops sending and resolves when every worker is done. */
  stop(): Promise<LoadResult>;
  /** Counts so far. */
  snapshot(): { sent: number; ok: number; failed: number; versions: ReadonlyMap<string, number> };
}

export function startLoad(opts: LoadOptions): RunningLoad {
  const u = new URL(opts.url);
  if (u.protocol !== "http:" || !["127.0.0.1", "localhost", "[::1]"].includes(u.hostname)) {
    throw new Error(`load: only loopback http URLs, got ${opts.url}`);
  }
  const concurrency = opts.concurrency ?? 4;
  const pauseMs = opts.pauseMs ?? 25;
  const maxRequests = opts.maxRequests ?? 20000;
  const maxMs = opts.maxMs ?? 300_000;
  const timeoutMs = opts.requestTimeoutMs ?? 5000;
  const started = performance.now();
  const result: LoadResult = { sent: 0, ok: 0, failed: 0, failures: [], versions: new Map(), lastVersion: undefined, durationMs: 0 };
  let stopping = false;
  const worker = async () => {
    while (!stopping && result.sent < maxRequests && performance.now() - started < maxMs) {
      result.sent++;
      const at = Math.round(performance.now() - started);
      try {
        const res = await fetch(opts.url, { signal: AbortSignal.timeout(timeoutMs) });
        const text = await res.text();
        if (res.status !== 200) throw new Error(`HTTP ${res.status} ${text.trim().slice(0, 80)}`);
        const version = (JSON.parse(text) as { version?: unknown }).version;
        const v = typeof version === "string" ? version : "?";
        result.versions.set(v, (result.versions.get(v) ?? 0) + 1);
        result.lastVersion = v;
        result.ok++;
      } catch (err) {
        result.failed++;
        if (result.failures.length < 20) result.failures.push({ atMs: at, error: (err as Error).message });
      }
      if (pauseMs > 0) await new Promise((r) => setTimeout(r, pauseMs));
    }
  };
  const workers = Array.from({ length: concurrency }, worker);
  return {
    async stop() {
      stopping = true;
      await Promise.all(workers);
      result.durationMs = Math.round(performance.now() - started);
      return result;
    },
    snapshot: () => ({ sent: result.sent, ok: result.ok, failed: result.failed, versions: new Map(result.versions) }),
  };
}
