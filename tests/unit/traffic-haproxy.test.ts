/**
 * The HAProxy runtime-API client: parsing `show stat` as HAProxy 2.6 prints it (fixture
 * captured from the Debian package), and the controller's commands, sent to an in-process
 * unix socket that answers as HAProxy's does (fake HAProxy socket): an empty line on success,
 * "No such server." otherwise. Values that reach the socket are checked first: an instance id
 * carrying a line break would be a second runtime command.
 */
import { expect } from "chai";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { createHaproxyController, parseShowStat, runtimeCommand } from "../../deploy/traffic/haproxy.js";
import { renderConfig } from "../../deploy/local/load-balancer.js";
import { REPO_ROOT } from "../helpers/emulator.js";

const FIXTURE = fs.readFileSync(path.join(REPO_ROOT, "tests", "fixtures", "traffic", "haproxy-2.6-show-stat.csv"), "utf8");

/** A socket that keeps server states and sessions, and records every command. */
async function fakeHaproxy(servers: Record<string, { status: string; sessions: number }>) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "zcp-hap-"));
  const socketPath = path.join(dir, "admin.sock");
  const commands: string[] = [];
  const header = FIXTURE.split("\n")[0] ?? "";
  const cols = header.slice(2).split(",");
  const row = (px: string, sv: string, scur: number, status: string) =>
    cols.map((c) => (c === "pxname" ? px : c === "svname" ? sv : c === "scur" ? String(scur) : c === "status" ? status : "")).join(",");
  const srv = net.createServer((sock) => {
    let buf = "";
    sock.on("data", (d) => {
      buf += d.toString();
      if (!buf.endsWith("\n")) return;
      const cmd = buf.trim();
      commands.push(cmd);
      const set = /^set server app\/(\S+) state (ready|drain|maint)$/.exec(cmd);
      if (cmd === "show stat") {
        sock.end([header, ...Object.entries(servers).map(([id, s]) => row("app", id, s.sessions, s.status)), ""].join("\n"));
      } else if (set && servers[set[1] ?? ""]) {
        const s = servers[set[1] ?? ""]!;
        s.status = set[2] === "ready" ? "UP" : set[2] === "drain" ? "DRAIN" : "MAINT";
        if (set[2] === "drain") s.sessions = 0; // its requests finish
        sock.end("\n");
      } else {
        sock.end("No such server.\n\n");
      }
    });
  });
  await new Promise<void>((r) => srv.listen(socketPath, r));
  return {
    socketPath,
    commands,
    close: () => new Promise<void>((r) => srv.close(() => (fs.rmSync(dir, { recursive: true, force: true }), r()))),
  };
}

describe("HAProxy runtime API (fake HAProxy socket)", function () {
  it("parses show stat as HAProxy 2.6 prints it, servers only", function () {
    expect(parseShowStat(FIXTURE)).to.deep.equal([
      { backend: "app", server: "i-0aaa1", sessions: 0, status: "DOWN" },
      { backend: "app", server: "i-0aaa2", sessions: 0, status: "DOWN" },
    ]);
  });

  it("drains (drain, then maint once idle), restores (ready, then UP) and counts healthy servers", async function () {
    const hap = await fakeHaproxy({ "i-1": { status: "UP", sessions: 3 }, "i-2": { status: "UP", sessions: 1 } });
    try {
      const lb = createHaproxyController({ kind: "haproxy", socketPath: hap.socketPath, backend: "app", drainTimeoutS: 5, healthyTimeoutS: 5 });
      expect(await lb.healthyCount(["i-1", "i-2"])).to.equal(2);
      await lb.drain(["i-1"]);
      expect(hap.commands.filter((c) => c.startsWith("set"))).to.deep.equal(["set server app/i-1 state drain", "set server app/i-1 state maint"]);
      expect(await lb.healthyCount(["i-1", "i-2"])).to.equal(1);
      await lb.restore(["i-1"]);
      expect(hap.commands.filter((c) => c.startsWith("set")).pop()).to.equal("set server app/i-1 state ready");
      expect(await lb.healthyCount(["i-1", "i-2"])).to.equal(2);
    } finally {
      await hap.close();
    }
  });

  it("reports HAProxy's refusal with the server named", async function () {
    const hap = await fakeHaproxy({ "i-1": { status: "UP", sessions: 0 } });
    try {
      const lb = createHaproxyController({ kind: "haproxy", socketPath: hap.socketPath, backend: "app", drainTimeoutS: 1, healthyTimeoutS: 1 });
      let caught: unknown;
      await lb.drain(["i-9"]).catch((err: unknown) => (caught = err));
      expect(String(caught)).to.match(/HAProxy refused "set server app\/i-9 state drain": No such server\./);
    } finally {
      await hap.close();
    }
  });

  it("never sends a value with a line break or ';' (a second runtime command)", async function () {
    const hap = await fakeHaproxy({ "i-1": { status: "UP", sessions: 0 } });
    try {
      const lb = createHaproxyController({ kind: "haproxy", socketPath: hap.socketPath, backend: "app", drainTimeoutS: 1, healthyTimeoutS: 1 });
      for (const id of ["i-1 state maint\nshutdown frontend web", "i-1;shutdown sessions server app/i-1", "../i-1"]) {
        let caught: unknown;
        await lb.drain([id]).catch((err: unknown) => (caught = err));
        expect(String(caught), id).to.match(/not a valid HAProxy server name/);
      }
      let caught: unknown;
      await runtimeCommand(hap.socketPath, "show stat\nshutdown frontend web").catch((err: unknown) => (caught = err));
      expect(String(caught)).to.match(/refusing a command with a line break/);
      expect(hap.commands, "nothing reached the socket").to.deep.equal([]);
    } finally {
      await hap.close();
    }
  });

  it("renders a balancer that health-checks every instance and does not retry on another server", function () {
    const cfg = renderConfig({
      port: 18080,
      socketPath: "/run/zcp/haproxy.sock",
      healthPath: "/health",
      targets: [
        { instanceId: "i-0aaa1", port: 18081 },
        { instanceId: "i-0aaa2", port: 18082 },
      ],
    });
    expect(cfg).to.include("  bind 127.0.0.1:18080\n");
    expect(cfg).to.include("  stats socket /run/zcp/haproxy.sock mode 600 level admin\n");
    expect(cfg).to.include("  retries 0\n");
    expect(cfg).to.include("  server i-0aaa1 127.0.0.1:18081 check\n  server i-0aaa2 127.0.0.1:18082 check\n");
    expect(() => renderConfig({ port: 1, socketPath: "/s", healthPath: "/health\n  server evil 10.0.0.1:80", targets: [] })).to.throw(/health path/);
    expect(() => renderConfig({ port: 1, socketPath: "/s", healthPath: "/health", targets: [{ instanceId: "i-1\n  server evil", port: 2 }] })).to.throw(/not a valid server name/);
  });
});
