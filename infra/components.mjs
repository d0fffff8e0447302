// The ES-module face of the package entry (package.json "exports" → "import"). The build is
// CommonJS (Pulumi serializes dynamic providers from it); re-exporting it keeps one copy of
// every class, so `instanceof` holds whichever way a program loads zcp.
export * from "../dist/infra/components.js";
