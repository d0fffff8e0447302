/**
 * docs/configuration.md's reference table is generated from the config schema; it must be
 * the current output of the generator, and the generator must follow the schema.
 */
import { expect } from "chai";
import * as fs from "node:fs";
import * as path from "node:path";
import { configReference, withCurrentReference } from "../../shared/config-reference.js";

const DOC = path.resolve(__dirname, "..", "..", "..", "docs", "configuration.md");

describe("docs/configuration.md reference (generated from the schema)", function () {
  it("is current: `npm run docs:config` would not change it", function () {
    const doc = fs.readFileSync(DOC, "utf8");
    expect(withCurrentReference(doc) === doc, "docs/configuration.md is stale: run `npm run build && npm run docs:config`").to.equal(true);
  });

  it("lists every key with the schema's own ranges and defaults", function () {
    const table = configReference();
    expect(table).to.include("| `zcp:deploy.canary` | integer 0–100 | `1` |");
    expect(table).to.include("| `zcp:deploy.batch` | string | `\"25%\"` |");
    expect(table).to.include("| `zcp:runtime.processManager` | `\"supervisor\"` \\| `\"systemd\"` | `\"supervisor\"` |");
    expect(table).to.include("| `zcp:app` |");
    expect(table).to.match(/\| `zcp:runtime\.healthUrl` \| string \| required \|/);
    expect(table).to.match(/\| `zcp:stateBackend\.kmsKeyArn` \| string `.+` \| none \|/);
  });

  it("every key the hand-written Keys table explains exists in the schema", function () {
    const doc = fs.readFileSync(DOC, "utf8");
    const keysSection = doc.slice(doc.indexOf("## Keys"), doc.indexOf("## Reference"));
    const generated = configReference();
    const documented = [...keysSection.matchAll(/^\| `(zcp:[A-Za-z.]+)`/gm)].map((m) => m[1]!);
    expect(documented.length).to.be.greaterThan(20);
    const unknown = documented.filter((k) => !generated.includes(`| \`${k}\` |`));
    expect(unknown, "documented keys the schema does not have").to.deep.equal([]);
  });
});
