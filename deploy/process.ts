import * as fs from "node:fs";

/**
 * Whether a process is still running. A zombie (killed, not yet reaped by its parent) counts
 * as gone: it holds nothing any more, and a runner killed a moment ago is one for a while.
 */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EPERM") return false;
  }
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    // The state follows the command name, which is in parentheses and may contain spaces.
    const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
    return state !== "Z" && state !== "X";
  } catch {
    // No /proc (not Linux): trust the signal check.
    return true;
  }
}
