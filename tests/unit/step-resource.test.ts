/**
 * The release steps' resources (deploy/providers/common.ts, StepResource): registered under
 * the type token `pulumi.dynamic.Resource` gives them, with a `__provider` input that the
 * engine's dynamic-provider host can load, without Pulumi's closure serializer. Pulumi mocks
 * stand in for the engine; the module text is run as the host runs it, a CommonJS module
 * whose `handler()` returns the provider.
 */
import { expect } from "chai";
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { providerModuleSource, StepResource } from "../../deploy/providers/common.js";
import { registered, useMocks, type MockRecorder } from "../helpers/pulumi-mocks.js";

const STEPS = [
  ["artifact", "artifactProvider", "Artifact"],
  ["fleet-deployment", "fleetDeploymentProvider", "FleetDeployment"],
  ["baked-image", "bakedImageProvider", "BakedImage"],
  ["launch-template-release", "launchTemplateReleaseProvider", "LaunchTemplateRelease"],
  ["latest-pointer", "latestPointerProvider", "LatestPointer"],
] as const;

const providerFile = (file: string) => path.join(__dirname, "..", "..", "deploy", "providers", `${file}.js`);

/** Runs `source` as the provider host does (a CommonJS module) and returns `handler()`. */
function loadAsHost(source: string): unknown {
  const mod = { exports: {} as { handler?: () => unknown } };
  new Function("exports", "require", "module", source)(mod.exports, require, mod);
  if (typeof mod.exports.handler !== "function") throw new Error("the module exports no handler");
  return mod.exports.handler();
}

describe("release step resources (Pulumi mocks; no closure serializer)", function () {
  let mocks: MockRecorder;
  before(async function () {
    mocks = await useMocks();
  });

  it("each step registers under pulumi.dynamic.Resource's type token, with a __provider module that returns the step's own provider", async function () {
    for (const [file, exportName, type] of STEPS) {
      const mod = require(providerFile(file)) as Record<string, unknown>;
      const Step = mod[type] as new (name: string, args: Record<string, unknown>) => pulumi.CustomResource;
      await registered(new Step(`step-resource-${file}`, { version: "v1" }));
      const rec = mocks.get(`pulumi-nodejs:dynamic/zcp:${type}`, `step-resource-${file}`);
      const source = rec.inputs["__provider"];
      expect(source, type).to.be.a("string");
      expect(loadAsHost(source as string), `${type}: the host gets the very provider object`).to.equal(mod[exportName]);
    }
  });

  it("gives the same type token as pulumi.dynamic.Resource, so stacks made before keep their resources", async function () {
    const { bakedImageProvider, BakedImage } = await import("../../deploy/providers/baked-image.js");
    class Serialized extends pulumi.dynamic.Resource {}
    await registered(new Serialized(bakedImageProvider, "step-resource-serialized", {}, undefined, "zcp", "BakedImage"));
    await registered(new BakedImage("step-resource-ours", {} as never));
    const serialized = mocks.resources.find((r) => r.name === "step-resource-serialized");
    const ours = mocks.resources.find((r) => r.name === "step-resource-ours");
    expect(ours?.type).to.equal(serialized?.type);
    // Both texts load to the same provider; ours is one line.
    expect(loadAsHost(serialized?.inputs["__provider"] as string)).to.have.keys(Object.keys(bakedImageProvider));
    expect((ours?.inputs["__provider"] as string).split("\n").filter(Boolean)).to.have.length(1);
  });

  it("refuses a relative module path, an export name that is not an identifier, a module without that provider, and a __provider input", function () {
    expect(() => providerModuleSource("deploy/providers/artifact.js", "artifactProvider")).to.throw(/provider module path "deploy\/providers\/artifact.js" is not absolute/);
    expect(() => providerModuleSource(providerFile("artifact"), 'x"]; process.exit(1); ["')).to.throw(/provider export name .* is not an identifier/);
    expect(() => new StepResource(providerFile("artifact"), "noSuchProvider", "Artifact", "step-resource-missing", {})).to.throw(/exports no dynamic provider named noSuchProvider/);
    expect(() => new StepResource(providerFile("artifact"), "artifactProvider", "Artifact", "step-resource-own", { __provider: "exports.handler = () => ({})" })).to.throw(
      /Artifact step-resource-own: the input __provider is the engine's own/,
    );
  });
});
