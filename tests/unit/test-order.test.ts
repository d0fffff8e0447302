/**
 * The suites' spec lists (tests/<suite>/.mocharc.cjs through tests/longest-first.cjs):
 * every compiled test file of the suite runs exactly once, the named slow files first.
 */
import { expect } from "chai";
import * as fs from "node:fs";
import * as path from "node:path";
import { REPO_ROOT } from "../helpers/emulator.js";

function compiledTests(suite: string): string[] {
  const dir = path.join(REPO_ROOT, "dist", "tests", suite);
  return fs
    .readdirSync(dir, { recursive: true })
    .map(String)
    .filter((f) => f.endsWith(".test.js"))
    .map((f) => path.join("dist", "tests", suite, f))
    .sort();
}

describe("the suites' file order (parallel workers, longest first)", function () {
  for (const suite of ["unit", "agent", "integration"]) {
    it(`tests/${suite}: every test file exactly once, the longest first`, function () {
      const config = require(path.join(REPO_ROOT, "tests", suite, ".mocharc.cjs")) as { spec: string[] };
      expect([...config.spec].sort(), "each compiled test file once").to.deep.equal(compiledTests(suite));
      expect(new Set(config.spec).size, "no file twice").to.equal(config.spec.length);
    });
  }

  it("a named file without a compiled test is an error, not a silently shorter run", function () {
    const longestFirst = require(path.join(REPO_ROOT, "tests", "longest-first.cjs")) as (suite: string, longest: string[]) => string[];
    expect(() => longestFirst("integration", ["no-such-file"])).to.throw(/names no-such-file\.test\.js, which has no compiled test file/);
    expect(longestFirst("integration", ["release"])[0]).to.equal(path.join("dist", "tests", "integration", "release.test.js"));
  });
});
