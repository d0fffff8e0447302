/**
 * Traffic control through HAProxy's runtime API (the `stats socket` at admin level), used by
 * the local environment where AWS would deregister and register targets. The commands are
 * those of the HAProxy 2.6 management guide, section 9.3 "Unix Socket commands":
 *
 *   set server <backend>/<server> state drain   weight 0: no new requests, in-flight ones finish
 *   set server <backend>/<server> state maint   no traffic and no health checks
 *   set server <backend>/<server> state ready   back in the rotation once its checks pass
 *   show stat                                   CSV; `scur` = current sessions, `status` = UP/DOWN/MAINT/DRAIN…
 *
 * Draining mirrors an ELB target group's deregistration delay: the server leaves the
 * rotation, and is put in maintenance as soon as its in-flight requests are done, or when the
 * delay runs out (ELB "completes the deregistration process immediately" when a target has no
 * in-flight requests; Elastic Load Balancing user guide, "Deregistration delay").
 */
import * as net from "node:net";
import { poll, realSleep } from "../../shared/retry.js";
import type { TrafficController, TrafficSpec } from "./controller.js";

/** HAProxy object names: letters, digits and `-_.:` (configuration manual, section 2.1). */
export const HAPROXY_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$/;

/** Sends one runtime-API command and returns HAProxy's whole answer. */
export async function runtimeCommand(socketPath: string, command: string, timeoutMs = 5000): Promise<string> {
  if (/[\r\n;]/.test(command)) throw new Error(`HAProxy runtime API: refusing a command with a line break or ";": ${JSON.stringify(command)}`);
  return await new Promise((resolve, reject) => {
    const sock = net.createConnection(socketPath);
    let out = "";
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`HAProxy runtime API on ${socketPath}: no answer to "${command}" within ${timeoutMs}ms`));
    }, timeoutMs);
    sock.setEncoding("utf8");
    sock.on("connect", () => sock.end(`${command}\n`));
    sock.on("data", (d: string) => (out += d));
    sock.on("error", (err) => {
      clearTimeout(timer);
      reject(new Error(`HAProxy runtime API on ${socketPath}: ${err.message}`));
    });
    sock.on("close", () => {
      clearTimeout(timer);
      resolve(out);
    });
  });
}

export interface ServerStat {
  backend: string;
  server: string;
  /** Current sessions (in-flight requests) on the server. */
  sessions: number;
  /** UP, DOWN, MAINT, DRAIN, "UP 1/2", … */
  status: string;
}

/** Parses `show stat`: a CSV whose header line starts with `# `. */
export function parseShowStat(csv: string): ServerStat[] {
  const lines = csv.split("\n").filter((l) => l.trim() !== "");
  const header = lines.find((l) => l.startsWith("# "));
  if (!header) throw new Error(`HAProxy runtime API: "show stat" answered without a header: ${csv.slice(0, 200)}`);
  const cols = header.slice(2).split(",");
  const at = (name: string) => {
    const i = cols.indexOf(name);
    if (i < 0) throw new Error(`HAProxy runtime API: "show stat" has no column ${name}`);
    return i;
  };
  const [px, sv, scur, st] = [at("pxname"), at("svname"), at("scur"), at("status")];
  return lines
    .filter((l) => !l.startsWith("#"))
    .map((l) => l.split(","))
    .filter((f) => f[sv] !== "FRONTEND" && f[sv] !== "BACKEND")
    .map((f) => ({ backend: f[px] ?? "", server: f[sv] ?? "", sessions: Number(f[scur] ?? 0) || 0, status: f[st] ?? "" }));
}

export interface HaproxyControllerOptions {
  sleep?: (ms: number) => Promise<void>;
  now?: () => number;
  log?: (m: string) => void;
}

type HaproxySpec = Extract<TrafficSpec, { kind: "haproxy" }>;

/** Server names are the instance ids (the local environment writes them so). */
export function createHaproxyController(spec: HaproxySpec, opts: HaproxyControllerOptions = {}): TrafficController {
  const sleep = opts.sleep ?? realSleep;
  const now = opts.now ?? Date.now;
  const log = opts.log ?? (() => undefined);
  if (!HAPROXY_NAME_RE.test(spec.backend)) throw new Error(`HAProxy backend name ${JSON.stringify(spec.backend)} is not a valid HAProxy name`);
  const serverName = (id: string) => {
    if (!HAPROXY_NAME_RE.test(id)) throw new Error(`instance id ${JSON.stringify(id)} is not a valid HAProxy server name`);
    return id;
  };
  const stats = async (ids: readonly string[]) => {
    const all = parseShowStat(await runtimeCommand(spec.socketPath, "show stat"));
    return ids.map((id) => {
      const s = all.find((x) => x.backend === spec.backend && x.server === serverName(id));
      if (!s) throw new Error(`HAProxy backend ${spec.backend} has no server ${id}`);
      return s;
    });
  };
  const setState = async (ids: readonly string[], state: "ready" | "drain" | "maint") => {
    for (const id of ids) {
      const answer = (await runtimeCommand(spec.socketPath, `set server ${spec.backend}/${serverName(id)} state ${state}`)).trim();
      // Success is an empty answer; anything else is HAProxy explaining a refusal.
      if (answer !== "") throw new Error(`HAProxy refused "set server ${spec.backend}/${id} state ${state}": ${answer}`);
    }
  };
  // A `show stat` on the local socket costs about a millisecond, and every poll's overshoot
  // adds to each batch (the local HAProxy checks a server every 100 ms): poll often.
  const pollOpts = (label: string, timeoutS: number) => ({
    label,
    maxAttempts: 100_000,
    deadlineMs: timeoutS * 1000,
    initialDelayMs: 5,
    maxDelayMs: 10,
    sleep,
    now,
    log: () => undefined,
  });
  return {
    kind: "haproxy",
    async healthyCount(ids) {
      return (await stats(ids)).filter((s) => s.status === "UP").length;
    },
    async drain(ids) {
      await setState(ids, "drain");
      const started = now();
      try {
        await poll(async () => {
          const busy = (await stats(ids)).filter((s) => s.sessions > 0);
          return busy.length === 0 ? { done: true, value: undefined } : { done: false, status: `${busy.length} server(s) busy` };
        }, pollOpts(`HAProxy drain of ${ids.join(", ")}`, spec.drainTimeoutS));
      } catch {
        // The deregistration delay is over: whatever is still in flight is cut, as on an ELB.
        log(`drain of ${ids.join(", ")}: requests still in flight after ${spec.drainTimeoutS}s; taking them out anyway`);
      }
      await setState(ids, "maint");
      log(`drained ${ids.join(", ")} from HAProxy in ${now() - started}ms`);
    },
    async restore(ids) {
      await setState(ids, "ready");
      await poll(async () => {
        const down = (await stats(ids)).filter((s) => s.status !== "UP");
        return down.length === 0 ? { done: true, value: undefined } : { done: false, status: down.map((s) => `${s.server} ${s.status}`).join(", ") };
      }, pollOpts(`HAProxy health of ${ids.join(", ")}`, spec.healthyTimeoutS));
    },
  };
}
