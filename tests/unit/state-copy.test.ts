/**
 * What a preview copy keeps of a stack (deploy/state-copy.ts): the exported state without its
 * secrets provider and with every encrypted value a placeholder secret, and the stack config
 * without what names the KMS key. The real engine reading such a copy is in
 * tests/integration/named-env.test.ts and release.test.ts.
 */
import { expect } from "chai";
import { SECRET_PLACEHOLDER, SECRET_SIG_KEY, SECRET_SIG_VALUE, sanitizeExportedState, stackConfigWithoutSecretsProvider } from "../../deploy/state-copy.js";
import { configErrorOf } from "./support/config-error.js";

const KMS_PROVIDER = {
  type: "cloud",
  state: { url: "awskms:///arn:aws:kms:eu-west-1:111111111111:key/00000000-0000-0000-0000-000000000001?region=eu-west-1", encryptedkey: "AQICAHh…" },
};
const encrypted = (ciphertext: string) => ({ [SECRET_SIG_KEY]: SECRET_SIG_VALUE, ciphertext });
const placeholder = { [SECRET_SIG_KEY]: SECRET_SIG_VALUE, plaintext: JSON.stringify(SECRET_PLACEHOLDER) };

/** An export as `pulumi stack export` (no --show-secrets) prints it for an awskms stack. */
function exported() {
  return {
    version: 3,
    deployment: {
      manifest: { time: "2026-12-01T00:00:00Z", magic: "m", version: "v3.274.1" },
      secrets_providers: KMS_PROVIDER,
      resources: [
        { urn: "urn:pulumi:dev::zero-credential-pipeline::pulumi:pulumi:Stack::zero-credential-pipeline-dev", type: "pulumi:pulumi:Stack", outputs: { bucket: "web-dev" } },
        {
          urn: "urn:pulumi:dev::zero-credential-pipeline::aws:ssm/parameter:Parameter::token",
          type: "aws:ssm/parameter:Parameter",
          inputs: { value: encrypted("djE6abc") },
          outputs: { value: encrypted("djE6abc"), tags: [{ k: encrypted("djE6def") }], name: "/zcp/web/dev/token" },
        },
      ],
    },
  };
}

describe("preview copies of a stack (deploy/state-copy.ts)", () => {
  it("drops the state's KMS secrets provider and takes the copy's own", () => {
    const own = { type: "passphrase", state: { salt: "v1:abc" } };
    const { state } = sanitizeExportedState(exported(), own);
    expect(state.deployment.secrets_providers).to.deep.equal(own);
    expect(JSON.stringify(state)).to.not.include("awskms");
    expect(JSON.stringify(state)).to.not.include("encryptedkey");
    expect(sanitizeExportedState(exported()).state.deployment).to.not.have.property("secrets_providers");
  });

  it("replaces every encrypted value, however deep, by a placeholder secret and says where", () => {
    const { state, placeholders } = sanitizeExportedState(exported());
    const resources = state.deployment.resources as { inputs?: Record<string, unknown>; outputs: Record<string, unknown> }[];
    expect(resources[1]?.inputs?.value).to.deep.equal(placeholder);
    expect(resources[1]?.outputs.value).to.deep.equal(placeholder);
    expect(resources[1]?.outputs.tags).to.deep.equal([{ k: placeholder }]);
    expect(JSON.stringify(state)).to.not.include("ciphertext");
    expect(placeholders).to.deep.equal([
      "deployment.resources[1].inputs.value",
      "deployment.resources[1].outputs.value",
      "deployment.resources[1].outputs.tags[0].k",
    ]);
  });

  it("keeps everything else as exported", () => {
    const { state } = sanitizeExportedState(exported());
    const resources = state.deployment.resources as { urn: string; outputs: Record<string, unknown> }[];
    expect(state.version).to.equal(3);
    expect(state.deployment.manifest).to.deep.equal(exported().deployment.manifest);
    expect(resources.map((r) => r.urn)).to.deep.equal(exported().deployment.resources.map((r) => r.urn));
    expect(resources[0]?.outputs).to.deep.equal({ bucket: "web-dev" });
    expect(resources[1]?.outputs.name).to.equal("/zcp/web/dev/token");
  });

  it("refuses what is not an exported state, naming the field", () => {
    expect(configErrorOf(() => sanitizeExportedState("[]")).field).to.equal("state");
    expect(configErrorOf(() => sanitizeExportedState({ deployment: {} })).field).to.equal("state.version");
    expect(configErrorOf(() => sanitizeExportedState({ version: 3 })).field).to.equal("state.deployment");
    expect(configErrorOf(() => sanitizeExportedState({ version: 3, deployment: {}, features: [1] })).field).to.equal("state.features");
  });

  it("drops secretsprovider, encryptedkey and encryptionsalt from the stack config, keeping the config", () => {
    const settings = { secretsProvider: KMS_PROVIDER.state.url, encryptedKey: "AQICAHh…", encryptionSalt: "v1:x", config: { "zcp:app": "web", "zcp:deploy": { batch: "50%" } } };
    expect(stackConfigWithoutSecretsProvider(settings, "Pulumi.dev.yaml")).to.deep.equal({ config: { "zcp:app": "web", "zcp:deploy": { batch: "50%" } } });
  });

  it("refuses a secure config value, naming its key: a copy cannot carry it without decrypting", () => {
    const top = configErrorOf(() => stackConfigWithoutSecretsProvider({ config: { "zcp:app": "web", "aws:secretKey": { secure: "v1:abc" } } }, "Pulumi.dev.yaml"));
    expect(top.field).to.equal("aws:secretKey");
    expect(top.message).to.match(/is a secret value in Pulumi\.dev\.yaml/);
    const nested = configErrorOf(() => stackConfigWithoutSecretsProvider({ config: { "app:db": { users: [{ password: { secure: "v1:abc" } }] } } }, "Pulumi.dev.yaml"));
    expect(nested.field).to.equal("app:db.users[0].password");
  });
});
