/**
 * The local environment's load balancer: one HAProxy (Debian package `haproxy`, installed by
 * scripts/tools.sh) on 127.0.0.1 in front of the local fleet, started and stopped by the pid
 * this module records. Releases drive it through its runtime API (deploy/traffic/haproxy.ts)
 * exactly where the AWS path deregisters and registers targets.
 *
 * The balancer behaves like an ALB in the ways a release can observe: round robin, an HTTP
 * health check on each server, and no retry of a failed request on another server
 * (`retries 0`), so an instance restarted while it still receives traffic shows up as failed
 * requests instead of being hidden by the balancer.
 */
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { processAlive } from "../process.js";
import { HAPROXY_NAME_RE, parseShowStat, runtimeCommand } from "../traffic/haproxy.js";

export const LB_BACKEND = "app";
/** Unix socket paths longer than this do not fit sockaddr_un on Linux. */
const MAX_SOCKET_PATH = 100;

export interface LoadBalancerState {
  pid: number;
  port: number;
  socketPath: string;
  configPath: string;
}

export interface LoadBalancerTarget {
  instanceId: string;
  port: number;
}

export function haproxyBinary(): string {
  for (const p of ["/usr/sbin/haproxy", "/usr/local/sbin/haproxy"]) if (fs.existsSync(p)) return p;
  return "haproxy";
}

/** HAProxy's configuration for the fleet; health checks as fast as a local fleet allows. */
export function renderConfig(opts: { port: number; socketPath: string; healthPath: string; targets: readonly LoadBalancerTarget[] }): string {
  if (!/^\/[A-Za-z0-9._~/-]*$/.test(opts.healthPath)) throw new Error(`load balancer: health path ${JSON.stringify(opts.healthPath)} is not a plain path`);
  const servers = opts.targets.map((t) => {
    if (!HAPROXY_NAME_RE.test(t.instanceId)) throw new Error(`load balancer: instance id ${JSON.stringify(t.instanceId)} is not a valid server name`);
    if (!Number.isInteger(t.port) || t.port < 1 || t.port > 65535) throw new Error(`load balancer: bad port ${t.port} for ${t.instanceId}`);
    return `  server ${t.instanceId} 127.0.0.1:${t.port} check`;
  });
  return [
    "global",
    `  stats socket ${opts.socketPath} mode 600 level admin`,
    "  stats timeout 10s",
    "defaults",
    "  mode http",
    "  timeout connect 1s",
    "  timeout client 15s",
    "  timeout server 15s",
    // An ALB does not retry a request on another target; neither does this balancer.
    "  retries 0",
    "frontend web",
    `  bind 127.0.0.1:${opts.port}`,
    `  default_backend ${LB_BACKEND}`,
    `backend ${LB_BACKEND}`,
    "  balance roundrobin",
    "  option httpchk",
    `  http-check send meth GET uri ${opts.healthPath}`,
    "  http-check expect status 200",
    // A server put back from maintenance needs one passing check, which HAProxy runs at the
    // next tick of `inter` (measured on HAProxy 2.6: neither `fastinter` nor `downinter` moves
    // it; docs/traffic.md). So `inter` is what a batch waits to rejoin: 50 ms on average at
    // 100 ms, for 10 checks a second per server.
    "  default-server inter 100ms fall 2 rise 2",
    ...servers,
    "",
  ].join("\n");
}

function alive(lb: LoadBalancerState): boolean {
  if (!processAlive(lb.pid)) return false;
  try {
    // Only a haproxy started with this config counts: a recorded pid may be reused by now.
    return fs.readFileSync(`/proc/${lb.pid}/cmdline`, "utf8").split("\0").includes(lb.configPath);
  } catch {
    return false;
  }
}

/**
 * Starts HAProxy for `targets` unless the one recorded in `current` runs with exactly this
 * configuration.
 */
export async function ensureLoadBalancer(opts: {
  dir: string;
  current: LoadBalancerState | undefined;
  targets: readonly LoadBalancerTarget[];
  healthPath: string;
  freePort: () => Promise<number>;
  log: (m: string) => void;
}): Promise<LoadBalancerState> {
  const configPath = path.join(opts.dir, "haproxy.cfg");
  const socketPath = path.join(opts.dir, "haproxy.sock");
  if (socketPath.length > MAX_SOCKET_PATH) {
    throw new Error(`load balancer: socket path ${socketPath} is longer than ${MAX_SOCKET_PATH} characters; use a shorter ZCP_WORK_DIR`);
  }
  const port = opts.current?.port ?? (await opts.freePort());
  const config = renderConfig({ port, socketPath, healthPath: opts.healthPath, targets: opts.targets });
  if (opts.current && alive(opts.current)) {
    const same = fs.existsSync(configPath) && fs.readFileSync(configPath, "utf8") === config;
    if (same) return opts.current;
    await stopLoadBalancer(opts.current);
  }
  fs.mkdirSync(opts.dir, { recursive: true });
  fs.writeFileSync(configPath, config);
  fs.rmSync(socketPath, { force: true });
  const logFd = fs.openSync(path.join(opts.dir, "haproxy.log"), "a");
  // -db: stay in the foreground, so the pid spawned is HAProxy's own and nothing else's.
  const child = spawn(haproxyBinary(), ["-db", "-f", configPath], { detached: true, stdio: ["ignore", logFd, logFd] });
  fs.closeSync(logFd);
  child.unref();
  if (!child.pid) throw new Error("could not start HAProxy; run `bash scripts/tools.sh`");
  const state: LoadBalancerState = { pid: child.pid, port, socketPath, configPath };
  // A fresh fleet runs no release yet, so its servers are down: wait for the runtime API
  // only, and let the first release bring the servers up.
  const deadline = Date.now() + 20_000;
  for (;;) {
    const servers = await runtimeCommand(socketPath, "show stat", 1000)
      .then((csv) => parseShowStat(csv).filter((s) => s.backend === LB_BACKEND).length)
      .catch(() => -1);
    if (servers === opts.targets.length) break;
    if (Date.now() > deadline || !processAlive(child.pid)) {
      throw new Error(`HAProxy did not start; see ${path.join(opts.dir, "haproxy.log")}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  opts.log(`started HAProxy on http://127.0.0.1:${port} in front of ${opts.targets.length} instance(s)`);
  return state;
}

/** Stops the HAProxy this module started, by its pid. */
export async function stopLoadBalancer(lb: LoadBalancerState): Promise<boolean> {
  if (!alive(lb)) return false;
  process.kill(lb.pid, "SIGTERM");
  const deadline = Date.now() + 5000;
  while (processAlive(lb.pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  if (processAlive(lb.pid)) process.kill(lb.pid, "SIGKILL");
  return true;
}
