// The ES-module face of `zero-credential-pipeline/cli` (package.json "exports" → "import").
export * from "../dist/deploy/cli.js";
