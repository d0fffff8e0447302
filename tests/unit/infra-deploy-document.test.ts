import { expect } from "chai";
import type * as DeployDocumentModule from "../../infra/deploy-document.js";
import { buildDeployDocument, sha256Hex } from "../../shared/agent/document.js";
import { stubAgentScript } from "../fixtures/infra/agent.js";
import { TAGS } from "../fixtures/infra/components.js";
import { type MockRecorder, optionsRecorder, parentTypeOf, registered, useMocks, valueOf } from "../helpers/pulumi-mocks.js";

describe("infra: DeployDocument", () => {
  let mocks: MockRecorder;
  let mod: typeof DeployDocumentModule;
  const script = stubAgentScript();
  const sha = sha256Hex(script);

  before(async () => {
    mocks = await useMocks();
    mod = await import("../../infra/deploy-document.js");
  });

  async function build(name: string) {
    const { transformation, records } = optionsRecorder();
    const c = new mod.DeployDocument(
      name,
      { app: "web", environment: "dev", bucketName: "zcp-web-dev-abc1234", agentScript: script, tags: TAGS },
      { transformations: [transformation] },
    );
    const urns = await registered(c.document, c.agentCopy);
    return { c, urns, records };
  }

  it("creates the SSM Command document with aws-native, versioned in place, from the agent script", async () => {
    const { c, urns } = await build("dd1");
    for (const urn of urns) expect(parentTypeOf(urn), urn).to.equal("zcp:infra:DeployDocument");
    const doc = mocks.get("aws-native:ssm:Document", "dd1-document").inputs;
    expect(doc).to.deep.include({
      name: "zcp-web-dev-deploy",
      documentType: "Command",
      documentFormat: "JSON",
      targetType: "/AWS::EC2::Instance",
      updateMethod: "NewVersion",
    });
    expect(doc["content"]).to.deep.equal(buildDeployDocument({ script }));
    expect(doc["tags"]).to.deep.equal(Object.entries(TAGS).map(([key, value]) => ({ key, value })));
    expect(await valueOf(c.documentName)).to.equal("zcp-web-dev-deploy");
  });

  it("publishes a content-addressed boot copy of the same agent to the artifact bucket, kept on delete", async () => {
    const { c, records } = await build("dd2");
    expect(c.agentSha256).to.equal(sha);
    expect(c.agentKey).to.equal(`agents/web/zcp-agent-${sha}.sh`);
    expect(mocks.get("aws:s3/bucketObjectv2:BucketObjectv2", "dd2-agent-copy").inputs).to.deep.equal({
      bucket: "zcp-web-dev-abc1234",
      key: c.agentKey,
      content: script,
      contentType: "text/x-shellscript",
      tags: TAGS,
    });
    const opts = records.find((r) => r.name === "dd2-agent-copy")!.opts;
    expect(opts.retainOnDelete).to.equal(true);
    expect(opts.parent).to.equal(c);
  });
});
