/**
 * The spec list of a suite that runs its files in parallel workers, longest file first.
 *
 * Mocha hands files to its workers in list order. Alphabetically, the suites' longest files
 * started last and ran alone at the end while the other worker sat idle; started first, they
 * run beside each other and the short files fill the gaps (longest-processing-time-first
 * scheduling). `longest` names the slow files (without `.test.js`), slowest first, as measured
 * by the spec reporter's per-test times; every other compiled test file of the suite follows in
 * alphabetical order, so a new file runs without editing the list. A name without a compiled
 * file is an error: the list must not silently go stale.
 */
"use strict";
const fs = require("node:fs");
const path = require("node:path");

module.exports = function longestFirst(suite, longest) {
  const dir = path.join(__dirname, "..", "dist", "tests", suite);
  const all = fs.existsSync(dir)
    ? fs
        .readdirSync(dir, { recursive: true })
        .map(String)
        .filter((f) => f.endsWith(".test.js"))
        .sort()
    : [];
  const named = longest.map((name) => `${name}.test.js`);
  if (all.length > 0) {
    const missing = named.filter((f) => !all.includes(f));
    if (missing.length > 0) throw new Error(`tests/${suite}/.mocharc.cjs names ${missing.join(", ")}, which has no compiled test file`);
  }
  const ordered = [...named, ...all.filter((f) => !named.includes(f))];
  return ordered.map((f) => path.join("dist", "tests", suite, f));
};
