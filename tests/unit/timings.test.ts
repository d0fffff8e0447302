/**
 * Timing marks (deploy/timings.ts) are written only when ZCP_TIMINGS_FILE names a file: a
 * release without it writes nothing anywhere; with it, every mark is one line with its label,
 * wall clock and process, in order, and `timed` marks both ends even when the work fails.
 */
import { expect } from "chai";
import * as fs from "node:fs";
import * as path from "node:path";
import { mark, readMarks, timed, TIMINGS_ENV } from "../../deploy/timings.js";
import { tempDir } from "../fixtures/package/trees.js";

describe("timing marks", function () {
  let dir: string;
  let saved: string | undefined;
  beforeEach(function () {
    dir = tempDir("timings");
    saved = process.env[TIMINGS_ENV];
    delete process.env[TIMINGS_ENV];
  });
  afterEach(function () {
    if (saved === undefined) delete process.env[TIMINGS_ENV];
    else process.env[TIMINGS_ENV] = saved;
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it("writes nothing when ZCP_TIMINGS_FILE is not set", async function () {
    mark("runner: up start");
    await timed("runner: build", async () => undefined);
    expect(fs.readdirSync(dir)).to.deep.equal([]);
  });

  it("appends one line per mark, in order, with the wall clock and the process; both ends of a failed span", async function () {
    const file = path.join(dir, "marks.jsonl");
    process.env[TIMINGS_ENV] = file;
    const before = Date.now();
    mark("runner: up start");
    const failed = await timed("runner: build", async () => {
      throw new Error("refused");
    }).catch((err: unknown) => err);
    expect(failed).to.be.instanceOf(Error);
    const marks = readMarks(file);
    expect(marks.map((m) => m.label)).to.deep.equal(["runner: up start", "runner: build: start", "runner: build: end"]);
    for (const m of marks) {
      expect(m.pid).to.equal(process.pid);
      expect(m.t).to.be.within(before, Date.now());
    }
  });
});
