#!/usr/bin/env node
// Removes compiled files in dist/ whose TypeScript source no longer exists, so an
// incremental build never leaves a deleted module (or test) behind to be loaded or run.
"use strict";
const fs = require("node:fs");
const path = require("node:path");

const root = path.resolve(__dirname, "..");
const dist = path.join(root, "dist");
const OUTPUT = /\.(js|js\.map|d\.ts|d\.ts\.map)$/;
let removed = 0;

function walk(dir) {
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) {
      walk(full);
      if (fs.readdirSync(full).length === 0) fs.rmdirSync(full);
      continue;
    }
    if (!OUTPUT.test(entry.name)) continue;
    const rel = path.relative(dist, full).replace(OUTPUT, "");
    if (!fs.existsSync(path.join(root, `${rel}.ts`))) {
      fs.rmSync(full);
      removed++;
    }
  }
}

if (fs.existsSync(dist)) walk(dist);
if (removed > 0) console.log(`prune-dist: removed ${removed} compiled file(s) without a source`);
