/**
 * Zero-downtime releases, end to end on the real parts: the real engine, the AWS emulator,
 * three local instances behind a real HAProxy driven through its runtime API, the real agent
 * restarting the example app through supervisord. A bounded stream of requests (loopback
 * only, a request budget and a time limit) goes through the load balancer while a release
 * runs; with traffic control not one may fail, and without it the same release must drop
 * some — otherwise this test could not tell the two apart.
 */
import { expect } from "chai";
import { startLoad, type LoadResult } from "../../bench/lib/load.js";
import { waitFor, ZcpHarness, type ZcpRun } from "../helpers/zcp.js";

/** Runs `release` while requests stream through the load balancer. */
async function releaseUnderLoad(zcp: ZcpHarness, url: string, version: string, env: Record<string, string> = {}): Promise<{ run: ZcpRun; load: LoadResult }> {
  const load = startLoad({ url: `${url}/version`, concurrency: 4, pauseMs: 25, maxRequests: 15000, maxMs: 240_000 });
  await waitFor("the first answers through the load balancer", () => load.snapshot().ok >= 20, 30_000);
  let run: ZcpRun;
  try {
    run = await zcp.run(["release", "--env", "local", "--version", version, "--skip-image", "--json"], env);
  } finally {
    // A moment more of traffic, so requests to the last batch after its return count too.
    await new Promise((r) => setTimeout(r, 500));
  }
  return { run, load: await load.stop() };
}

describe("zero-downtime releases through the local HAProxy (real engine, HAProxy, supervisord, agent)", function () {
  const zcp = new ZcpHarness(3);
  let url = "";
  before(async function () {
    const v1 = await zcp.run(["release", "--env", "local", "--version", "v1", "--skip-image"]);
    expect(v1.code, v1.stderr).to.equal(0);
    const st = await zcp.run(["status", "--env", "local", "--json"]);
    expect(st.code, st.stderr).to.equal(0);
    const status = JSON.parse(st.stdout) as { loadBalancer?: { url: string } };
    expect(status.loadBalancer?.url).to.match(/^http:\/\/127\.0\.0\.1:\d+$/);
    url = status.loadBalancer?.url ?? "";
  });
  after(async () => zcp.teardown());

  it("v1 → v2 with traffic control: no request fails, and traffic moves from v1 to v2", async function () {
    const { run, load } = await releaseUnderLoad(zcp, url, "v2");
    expect(run.code, run.stderr).to.equal(0);
    const summary = JSON.parse(run.stdout) as { trafficControl: string; batchDrainMs: number[] };
    expect(summary.trafficControl).to.equal("haproxy");
    expect(summary.batchDrainMs).to.have.length(3);
    expect(load.sent).to.be.greaterThan(100);
    expect(load.failed, `failed requests: ${JSON.stringify(load.failures)}`).to.equal(0);
    expect(load.versions.get("v1") ?? 0).to.be.greaterThan(0);
    expect(load.versions.get("v2") ?? 0).to.be.greaterThan(0);
    expect(load.lastVersion).to.equal("v2");
  });

  it("the same release with traffic control off drops requests (what the test above rules out)", async function () {
    const { run, load } = await releaseUnderLoad(zcp, url, "v3", { ZCP_LOCAL_TRAFFIC_CONTROL: "off" });
    expect(run.code, run.stderr).to.equal(0);
    expect((JSON.parse(run.stdout) as { trafficControl: string }).trafficControl).to.equal("none");
    expect(load.sent).to.be.greaterThan(100);
    expect(load.failed, `no request failed out of ${load.sent}`).to.be.greaterThan(0);
    expect(load.lastVersion).to.equal("v3");
  });
});
