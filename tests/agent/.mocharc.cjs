// Longest file first (see tests/longest-first.cjs); the rest follow alphabetically.
"use strict";
const longestFirst = require("../longest-first.cjs");

module.exports = {
  spec: longestFirst("agent", ["hostile-app", "deploy", "image-prepare", "failure", "interrupted"]),
  parallel: true,
  jobs: 2,
  timeout: 60000,
  "enable-source-maps": true,
};
