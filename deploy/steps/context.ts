/**
 * What every step implementation needs inside the engine's provider host: AWS clients built
 * per call (region from inputs, endpoint and credentials from the host's environment), and a
 * pacing whose progress lines go to the runner.
 */
import { createAwsClients, destroyAwsClients, type AwsClients } from "../aws/clients.js";
import type { Pacing } from "../aws/call.js";
import { emitProgress } from "../progress.js";
import type { Transport } from "../transport.js";
import { mark, markProcessStart } from "../timings.js";

markProcessStart("host: process start");
mark("host: step modules loaded");

/**
 * What a step may be handed instead of the real thing: clients (the benchmark's simulators),
 * a transport, and a clock. Inside the engine's provider host everything is left out.
 */
export interface StepEnv {
  clients?: AwsClients;
  transport?: Transport;
  sleep?: (ms: number) => Promise<void>;
  now?: () => number;
}

/** Given clients when the caller has them, else clients built for the call. */
export async function withStepClients<T>(region: string, env: StepEnv, fn: (clients: AwsClients) => Promise<T>): Promise<T> {
  if (env.clients) return fn(env.clients);
  return withClients(region, fn);
}

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
 * group leaves the host behind: it would finish a step nobody waits for (possibly moving
 * things after the runner is gone) and then idle forever. A host whose parent (the engine)
 * disappeared stops itself; every step is safe to stop and retry, which the next release's
 * recovery relies on. The watch starts when the host first loads a step and never keeps the
 * process alive by itself.
 */
const ENGINE_PID = process.ppid;
setInterval(() => {
  if (process.ppid !== ENGINE_PID) {
    emitProgress({ kind: "log", step: "engine", message: "the release runner is gone; the provider host stops" });
    process.exit(1);
  }
}, 500).unref();

/** Runs a step with start/done/failed records around it. */
export async function traced<T>(step: string, detail: string, fn: () => Promise<T>): Promise<T> {
  emitProgress({ kind: "step", step, state: "start", detail });
  mark(`step ${step}: start`);
  try {
    const out = await fn();
    mark(`step ${step}: end`);
    emitProgress({ kind: "step", step, state: "done", detail });
    return out;
  } catch (err) {
    emitProgress({ kind: "step", step, state: "failed", detail: err instanceof Error ? err.message : String(err) });
    throw err;
  }
}
