/**
 * Timing marks for finding where a release's time goes (bench/release-overhead.ts reads them).
 *
 * Off unless ZCP_TIMINGS_FILE names a file. Then the runner, the engine's provider host and
 * anything else that loads this module append one JSON line per mark: a label, the wall clock
 * (`Date.now()`, shared by every process on the machine) and the process id. Lines are small
 * and appended with O_APPEND, so processes writing at once never interleave within a line.
 * A mark never fails what it measures.
 */
import * as fs from "node:fs";
import { performance } from "node:perf_hooks";

export const TIMINGS_ENV = "ZCP_TIMINGS_FILE";

export interface TimingMark {
  label: string;
  /** Wall clock, ms since the epoch. */
  t: number;
  pid: number;
}

/** Appends a mark when timings are on. */
export function mark(label: string, file = process.env[TIMINGS_ENV]): void {
  if (!file) return;
  write(file, { label, t: Date.now(), pid: process.pid });
}

/** Marks when this process started, before Node.js loaded anything (its own time origin). */
export function markProcessStart(label: string, file = process.env[TIMINGS_ENV]): void {
  if (!file) return;
  write(file, { label, t: Math.round(performance.timeOrigin), pid: process.pid });
}

/** Runs `fn` between `<label>: start` and `<label>: end` marks. */
export async function timed<T>(label: string, fn: () => Promise<T>): Promise<T> {
  mark(`${label}: start`);
  try {
    return await fn();
  } finally {
    mark(`${label}: end`);
  }
}

/** The marks in `file`, in the order they were written. */
export function readMarks(file: string): TimingMark[] {
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch {
    return [];
  }
  const out: TimingMark[] = [];
  for (const line of text.split("\n")) {
    if (!line) continue;
    try {
      out.push(JSON.parse(line) as TimingMark);
    } catch {
      // a mark is best effort
    }
  }
  return out;
}

function write(file: string, m: TimingMark): void {
  try {
    fs.appendFileSync(file, `${JSON.stringify(m)}\n`);
  } catch {
    // best effort
  }
}
