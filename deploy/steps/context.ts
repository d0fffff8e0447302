/**
 * What every step implementation needs inside the engine's provider host: AWS clients built
 * per call (region from inputs, endpoint and credentials from the host's environment), and a
 * pacing whose progress lines go to the runner.
 */
import { createAwsClients, destroyAwsClients, type AwsClients } from "../aws/clients.js";
import type { Pacing } from "../aws/call.js";
import { emitProgress } from "../progress.js";

export async function withClients<T>(region: string, fn: (clients: AwsClients) => Promise<T>): Promise<T> {
  const clients = createAwsClients({ region });
  try {
    return await fn(clients);
  } finally {
    destroyAwsClients(clients);
  }
}

export function stepPacing(step: string): Pacing {
  return { log: (message: string) => emitProgress({ kind: "log", step, message }) };
}

export function stepLog(step: string): (message: string) => void {
  return (message: string) => emitProgress({ kind: "log", step, message });
}

/**
 * The engine starts each provider host in its own process group, so a runner killed with its
 * group leaves the host behind, finishing a step nobody waits for (and possibly moving things
 * after the runner is gone). A host whose parent (the engine) disappeared stops itself; every
 * step is safe to stop and retry, which the next release's recovery relies on.
 */
function exitWhenOrphaned(): () => void {
  const parent = process.ppid;
  const timer = setInterval(() => {
    if (process.ppid !== parent) {
      emitProgress({ kind: "log", step: "engine", message: "the release runner is gone; stopping this step" });
      process.exit(1);
    }
  }, 500);
  timer.unref();
  return () => clearInterval(timer);
}

/** Runs a step with start/done/failed records around it. */
export async function traced<T>(step: string, detail: string, fn: () => Promise<T>): Promise<T> {
  emitProgress({ kind: "step", step, state: "start", detail });
  const stopWatching = exitWhenOrphaned();
  try {
    const out = await fn();
    emitProgress({ kind: "step", step, state: "done", detail });
    return out;
  } catch (err) {
    emitProgress({ kind: "step", step, state: "failed", detail: err instanceof Error ? err.message : String(err) });
    throw err;
  } finally {
    stopWatching();
  }
}
