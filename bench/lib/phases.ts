/**
 * Where the time of one `zcp release --json` goes, read from its progress lines as they
 * arrived (see local-zcp.ts). The runner writes its own lines at once; the engine's step lines
 * reach it through a progress file it tails every 200 ms, so each phase is good to ±0.2 s.
 */
import { table } from "../../deploy/view.js";
import type { TimedLine } from "./local-zcp.js";

/**
 * Phases in release order, each ending at the first line that matches. A phase runs from the
 * end of the previous one found, so engine time between two steps counts for the later step,
 * and a step that did not run (no image with --skip-image) leaves no phase.
 */
const PHASES: { name: string; endsAt: RegExp | "exit" }[] = [
  { name: "start-up, account check, build", endsAt: /^(packaged|built) / },
  { name: "upload", endsAt: /^(uploaded|reusing identical) / },
  { name: "latest pointer read", endsAt: /^(release|rollback) \S+ → \S+ on / },
  { name: "engine start (workspace, stack, program, providers)", endsAt: /\] (Artifact|FleetDeployment): start/ },
  { name: "Artifact step", endsAt: /\] FleetDeployment: start/ },
  { name: "FleetDeployment step", endsAt: /\] FleetDeployment: (done|failed)/ },
  { name: "BakedImage step", endsAt: /\] BakedImage: (done|skipped|failed)/ },
  { name: "LaunchTemplateRelease step", endsAt: /\] LaunchTemplateRelease: (done|skipped|failed)/ },
  { name: "LatestPointer step", endsAt: /\] LatestPointer: (done|failed)/ },
  { name: "engine finish, summary, exit", endsAt: "exit" },
];

export interface Phase {
  name: string;
  ms: number;
}

export function phasesOf(lines: readonly TimedLine[], wallMs: number): Phase[] {
  const out: Phase[] = [];
  let from = 0;
  let fromLine = -1;
  for (const p of PHASES) {
    const endsAt = p.endsAt;
    if (endsAt === "exit") {
      out.push({ name: p.name, ms: wallMs - from });
      break;
    }
    const index = lines.findIndex((l) => endsAt.test(l.text));
    const line = lines[index];
    // Not there (the step did not run), or the line that ended the previous phase.
    if (!line || index <= fromLine) continue;
    out.push({ name: p.name, ms: line.atMs - from });
    from = line.atMs;
    fromLine = index;
  }
  return out;
}

/** The phases as an indented two-column table. */
export function phaseTable(lines: readonly TimedLine[], wallMs: number, indent = "  "): string {
  return table(
    ["phase", "seconds"],
    phasesOf(lines, wallMs).map((p) => [p.name, (p.ms / 1000).toFixed(1)]),
  )
    .split("\n")
    .map((l) => `${indent}${l}`)
    .join("\n");
}
