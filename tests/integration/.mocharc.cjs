// Longest file first (see tests/longest-first.cjs); the rest follow alphabetically.
"use strict";
const longestFirst = require("../longest-first.cjs");

module.exports = {
  spec: longestFirst("integration", ["faults-recovery", "release", "faults", "interrupted-candidate", "policy-pack", "engine", "named-env", "package", "zero-downtime"]),
  parallel: true,
  jobs: 2,
  timeout: 600000,
  "enable-source-maps": true,
};
