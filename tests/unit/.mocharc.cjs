// Longest file first (see tests/longest-first.cjs); the rest follow alphabetically. The unit
// files run in two parallel workers too: the slowest ones mostly wait (the SDK's real retry
// backoff, pip and npm resolving offline), so `npm run test:unit` alone stays under a minute.
"use strict";
const longestFirst = require("../longest-first.cjs");

module.exports = {
  spec: longestFirst("unit", ["one-retry-layer", "build", "user-data", "traffic-aws", "package", "workflows"]),
  parallel: true,
  jobs: 2,
  timeout: 20000,
  "enable-source-maps": true,
};
