/**
 * Streams requests through a loopback load balancer and prints, once a second, which version
 * answered how often and how many requests failed; on SIGINT or SIGTERM (or after --max-s) it
 * prints the totals and exits. The demo runs it during a release to show traffic moving.
 *
 * Usage: node dist/bench/lib/watch-traffic.js http://127.0.0.1:PORT [--max-s 300]
 */
import { startLoad } from "./load.js";

async function main(): Promise<void> {
  const [url, flag, value] = process.argv.slice(2);
  if (!url) throw new Error("usage: watch-traffic URL [--max-s N]");
  const maxS = flag === "--max-s" ? Number(value) : 300;
  if (!Number.isInteger(maxS) || maxS < 1 || maxS > 3600) throw new Error("--max-s: a whole number of seconds 1..3600");
  const load = startLoad({ url: `${url}/version`, concurrency: 2, pauseMs: 50, maxMs: maxS * 1000 });
  const seen = new Map<string, number>();
  let lastFailed = 0;
  const tick = setInterval(() => {
    const snap = load.snapshot();
    const parts = [...snap.versions].map(([v, n]) => `${v} ${n - (seen.get(v) ?? 0)}`);
    for (const [v, n] of snap.versions) seen.set(v, n);
    console.log(`traffic ${url}: ${parts.join(", ") || "no answer"}; failed ${snap.failed - lastFailed}`);
    lastFailed = snap.failed;
  }, 1000);
  const finish = async () => {
    clearInterval(tick);
    const r = await load.stop();
    const versions = [...r.versions].map(([v, n]) => `${v} ${n}`).join(", ");
    console.log(`traffic ${url}: ${r.sent} requests, answered by ${versions || "nothing"}; ${r.failed} failed`);
    process.exit(0);
  };
  process.once("SIGINT", () => void finish());
  process.once("SIGTERM", () => void finish());
  setTimeout(() => void finish(), maxS * 1000).unref();
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exitCode = 2;
});
