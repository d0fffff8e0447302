/**
 * How the release stack's secrets are encrypted: the configured KMS key on S3 backends, the
 * fixed passphrase only for file:// (local) backends, and a passphrase refused elsewhere.
 */
import { expect } from "chai";
import { LOCAL_PASSPHRASE, releaseSecrets } from "../../deploy/environments.js";
import { configErrorOf } from "./support/config-error.js";

const KEY = "arn:aws:kms:eu-west-1:111111111111:key/00000000-0000-0000-0000-000000000001";
const S3 = "s3://example-org-pulumi-state/zcp/web";

describe("release stack secrets (deploy/environments.ts releaseSecrets)", () => {
  it("encrypts with the configured KMS key on an S3 backend, in the key's region", () => {
    expect(releaseSecrets(S3, KEY, "us-east-1", {})).to.deep.equal({ secretsProvider: `awskms:///${KEY}?region=eu-west-1` });
  });

  it("passes no passphrase to the engine for an S3 backend", () => {
    expect(releaseSecrets(S3, KEY, "eu-west-1", {})).to.not.have.property("passphrase");
  });

  it("refuses an S3 backend without a KMS key, naming the field", () => {
    const err = configErrorOf(() => releaseSecrets(S3, undefined, "eu-west-1", {}));
    expect(err.field).to.equal("zcp:stateBackend.kmsKeyArn");
    expect(err.message).to.match(/is required for a release stack on s3:\/\//);
  });

  for (const name of ["PULUMI_CONFIG_PASSPHRASE", "PULUMI_CONFIG_PASSPHRASE_FILE"]) {
    it(`refuses ${name} for an S3 backend, even with a KMS key`, () => {
      const err = configErrorOf(() => releaseSecrets(S3, KEY, "eu-west-1", { [name]: LOCAL_PASSPHRASE }));
      expect(err.field).to.equal(name);
      expect(err.message).to.match(/never a passphrase/);
    });
  }

  it("keeps the fixed passphrase for the local environment's file:// backend only", () => {
    expect(releaseSecrets("file:///var/zcp/state", undefined, "us-east-1", {})).to.deep.equal({
      secretsProvider: "passphrase",
      passphrase: LOCAL_PASSPHRASE,
    });
  });
});
