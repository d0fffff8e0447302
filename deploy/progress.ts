/**
 * Progress from inside the release stack's providers back to the runner.
 *
 * Dynamic providers run in the engine's provider host, a separate process with no channel to
 * the runner. They append JSON lines to the file named by ZCP_PROGRESS_FILE (the runner creates
 * it and passes it through the engine's environment); the runner tails it for the live view,
 * the summary table and the failure summary. Lines are small and appended with O_APPEND, so
 * concurrent writers never interleave within a line.
 */
import * as fs from "node:fs";

export type ProgressRecord =
  | { kind: "step"; step: string; state: "start" | "done" | "failed" | "skipped"; detail?: string; t: number }
  | { kind: "log"; step: string; message: string; t: number }
  | {
      kind: "instance";
      step: string;
      batch: number;
      batches: number;
      instanceId: string;
      status: string;
      message?: string;
      durationMs?: number;
      t: number;
    }
  | { kind: "result"; step: string; data: Record<string, unknown>; t: number };

export const PROGRESS_ENV = "ZCP_PROGRESS_FILE";

type Omit_t<T> = T extends unknown ? Omit<T, "t"> : never;

/** Appends one record; a provider must never fail because progress could not be written. */
export function emitProgress(record: Omit_t<ProgressRecord>, file = process.env[PROGRESS_ENV]): void {
  if (!file) return;
  try {
    fs.appendFileSync(file, `${JSON.stringify({ ...record, t: Date.now() })}\n`);
  } catch {
    // progress is best effort
  }
}

/** Reads the records appended since `offset`; returns them and the new offset. */
export function readProgress(file: string, offset: number): { records: ProgressRecord[]; offset: number } {
  let buf: Buffer;
  try {
    const fd = fs.openSync(file, "r");
    try {
      const size = fs.fstatSync(fd).size;
      if (size <= offset) return { records: [], offset };
      buf = Buffer.alloc(size - offset);
      fs.readSync(fd, buf, 0, buf.length, offset);
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    return { records: [], offset };
  }
  const text = buf.toString("utf8");
  const end = text.lastIndexOf("\n");
  if (end < 0) return { records: [], offset };
  const records: ProgressRecord[] = [];
  for (const line of text.slice(0, end).split("\n")) {
    if (!line) continue;
    try {
      records.push(JSON.parse(line) as ProgressRecord);
    } catch {
      // a torn line cannot happen with O_APPEND writes below PIPE_BUF; skip anything odd
    }
  }
  return { records, offset: offset + Buffer.byteLength(text.slice(0, end + 1)) };
}
