/**
 * What a person (or a machine) sees while a release runs and after it ends: a live progress
 * line on a terminal, plain lines otherwise (CI, pipes), a summary table at the end, JSON with
 * --json, and a markdown summary for GitHub Actions' step summary.
 */
import * as fs from "node:fs";
import type { ProgressRecord } from "./progress.js";

export interface Output {
  /** Progress and human text (stderr when --json, so stdout stays machine-readable). */
  info(line: string): void;
  /** The final result (stdout). */
  result(text: string): void;
}

export function consoleOutput(json: boolean): Output {
  return {
    info: (line) => (json ? process.stderr : process.stdout).write(`${line}\n`),
    result: (text) => process.stdout.write(text.endsWith("\n") ? text : `${text}\n`),
  };
}

/** Renders progress records; on a TTY the current activity is one rewritten line. */
export class ProgressView {
  private readonly started = Date.now();
  private current = "";
  private liveShown = false;
  constructor(
    private readonly out: Output,
    private readonly live: boolean,
  ) {}

  private elapsed(): string {
    return `${((Date.now() - this.started) / 1000).toFixed(1)}s`;
  }

  line(text: string): void {
    this.clearLive();
    this.out.info(text);
    this.drawLive();
  }

  record(r: ProgressRecord): void {
    switch (r.kind) {
      case "step":
        if (r.state === "start") this.current = `${r.step} ${r.detail ?? ""}`.trim();
        else this.current = "";
        this.line(`[${this.elapsed()}] ${r.step}: ${r.state}${r.detail && r.state !== "start" ? ` — ${firstLine(r.detail)}` : r.detail ? ` ${r.detail}` : ""}`);
        break;
      case "log":
        this.current = `${r.step}: ${r.message}`;
        this.line(`[${this.elapsed()}] ${r.step}: ${r.message}`);
        break;
      case "instance":
        this.line(
          `[${this.elapsed()}] ${r.step}: batch ${r.batch}/${r.batches} ${r.instanceId} ${r.status}` +
            `${r.durationMs !== undefined ? ` (${(r.durationMs / 1000).toFixed(1)}s)` : ""}${r.message ? ` — ${r.message}` : ""}`,
        );
        break;
      case "result":
        break;
    }
  }

  private clearLive(): void {
    if (this.live && this.liveShown) {
      process.stderr.write("\r\x1b[2K");
      this.liveShown = false;
    }
  }

  private drawLive(): void {
    if (!this.live || !this.current) return;
    process.stderr.write(`\r\x1b[2K⏳ ${this.elapsed()} ${this.current}`.slice(0, (process.stderr.columns || 100) + 8));
    this.liveShown = true;
  }

  tick(): void {
    if (this.live) {
      this.clearLive();
      this.drawLive();
    }
  }

  close(): void {
    this.clearLive();
  }
}

function firstLine(s: string): string {
  return s.split("\n")[0] ?? s;
}

/** A plain text table with aligned columns. */
export function table(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const fmt = (cells: readonly string[]) => cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join("  ").trimEnd();
  return [fmt(headers), fmt(widths.map((w) => "-".repeat(w))), ...rows.map(fmt)].join("\n");
}

export function markdownTable(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const esc = (s: string) => s.replace(/\|/g, "\\|");
  return [
    `| ${headers.map(esc).join(" | ")} |`,
    `| ${headers.map(() => "---").join(" | ")} |`,
    ...rows.map((r) => `| ${r.map(esc).join(" | ")} |`),
  ].join("\n");
}

/** Appends to $GITHUB_STEP_SUMMARY when the runner runs in GitHub Actions. */
export function appendStepSummary(markdown: string, env: NodeJS.ProcessEnv = process.env): void {
  const file = env.GITHUB_STEP_SUMMARY;
  if (!file) return;
  fs.appendFileSync(file, `${markdown}\n`);
}
