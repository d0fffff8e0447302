import { expect } from "chai";
import type * as GitHubOidcModule from "../../infra/github-oidc.js";
import { ConfigError } from "../../shared/errors.js";
import { PROVIDER_ARN, TAGS } from "../fixtures/infra/components.js";
import { type MockRecorder, parentTypeOf, registered, useMocks, valueOf } from "../helpers/pulumi-mocks.js";

const PROVIDER_TYPE = "aws:iam/openIdConnectProvider:OpenIdConnectProvider";
const LOOKUP = "aws:iam/getOpenIdConnectProvider:getOpenIdConnectProvider";

describe("infra: GitHubOidc", () => {
  let mocks: MockRecorder;
  let mod: typeof GitHubOidcModule;
  before(async () => {
    mocks = await useMocks();
    mod = await import("../../infra/github-oidc.js");
  });

  it("creates the account's GitHub provider for the sts.amazonaws.com audience", async () => {
    const c = new mod.GitHubOidc("oidc1", { create: true, tags: TAGS });
    const [urn] = await registered(c.provider);
    expect(parentTypeOf(urn!)).to.equal("zcp:infra:GitHubOidc");
    expect(mocks.get(PROVIDER_TYPE, "oidc1-provider").inputs).to.deep.equal({
      url: "https://token.actions.githubusercontent.com",
      clientIdLists: ["sts.amazonaws.com"],
      tags: TAGS,
    });
    expect(await valueOf(c.providerArn)).to.equal(PROVIDER_ARN);
  });

  it("adopts an existing provider: looks it up, creates nothing", async () => {
    const before = mocks.calls.length;
    const c = new mod.GitHubOidc("oidc2", { existingProviderArn: PROVIDER_ARN });
    expect(await valueOf(c.providerArn)).to.equal(PROVIDER_ARN);
    expect(c.provider).to.equal(undefined);
    expect(mocks.named("oidc2").map((r) => r.type)).to.deep.equal(["zcp:infra:GitHubOidc"]);
    expect(mocks.calls.slice(before).filter((call) => call.token === LOOKUP)).to.deep.equal([{ token: LOOKUP, inputs: { arn: PROVIDER_ARN } }]);
  });

  it("fails, naming the field, when the adopted provider lacks the sts.amazonaws.com audience", async () => {
    const original = mocks.callHandlers.get(LOOKUP)!;
    mocks.callHandlers.set(LOOKUP, (inputs) => ({ ...original(inputs), clientIdLists: ["https://github.com/example-org"] }));
    try {
      const c = new mod.GitHubOidc("oidc3", { existingProviderArn: PROVIDER_ARN });
      const err = await valueOf(c.providerArn).then(
        () => expect.fail("expected the lookup to fail"),
        (e: unknown) => e,
      );
      expect(err).to.be.instanceOf(ConfigError);
      expect((err as ConfigError).field).to.equal("zcp:oidc.existingProviderArn");
    } finally {
      mocks.callHandlers.set(LOOKUP, original);
    }
  });

  it("refuses both an existing and a new provider, and neither", () => {
    const both = { create: true, existingProviderArn: PROVIDER_ARN } as unknown as GitHubOidcModule.GitHubOidcArgs;
    expect(() => new mod.GitHubOidc("oidc4", both)).to.throw(ConfigError, /^zcp:oidc: set either create: true or existingProviderArn/);
    expect(() => new mod.GitHubOidc("oidc5", {} as unknown as GitHubOidcModule.GitHubOidcArgs)).to.throw(ConfigError);
  });
});
