/**
 * Client construction: adaptive retry, the region, and the emulator endpoint (with path-style
 * S3) taken from AWS_ENDPOINT_URL.
 */
import { expect } from "chai";
import { createAwsClients, destroyAwsClients, resolveClientConfig } from "../../deploy/aws/clients.js";
import { ConfigError } from "../../shared/errors.js";

/** A resolved client setting is either the value or a provider of it. */
async function resolved(setting: unknown): Promise<unknown> {
  return typeof setting === "function" ? await (setting as () => Promise<unknown>)() : setting;
}

describe("deploy/aws/clients", function () {
  it("uses adaptive retry and takes the endpoint from AWS_ENDPOINT_URL when none is given", function () {
    expect(resolveClientConfig({ region: "eu-west-1" }, { AWS_ENDPOINT_URL: "http://127.0.0.1:4566" })).to.deep.equal({
      region: "eu-west-1",
      retryMode: "adaptive",
      maxAttempts: 5,
      endpoint: "http://127.0.0.1:4566",
    });
    expect(resolveClientConfig({ region: "eu-west-1" }, {})).to.not.have.property("endpoint");
    expect(resolveClientConfig({ region: "eu-west-1", endpoint: "http://127.0.0.1:1" }, { AWS_ENDPOINT_URL: "http://127.0.0.1:2" }).endpoint).to.equal(
      "http://127.0.0.1:1",
    );
  });

  it("builds path-style S3 only when an endpoint is set", async function () {
    const local = createAwsClients({ region: "us-east-1", endpoint: "http://127.0.0.1:9" }, {});
    const real = createAwsClients({ region: "us-east-1" }, {});
    try {
      expect(local.s3.config.forcePathStyle).to.equal(true);
      expect(real.s3.config.forcePathStyle).to.not.equal(true);
      expect(await resolved(local.ssm.config.retryMode)).to.equal("adaptive");
      expect(await resolved(local.ec2.config.region)).to.equal("us-east-1");
    } finally {
      destroyAwsClients(local);
      destroyAwsClients(real);
    }
  });

  it("refuses to build clients without a region", function () {
    expect(() => resolveClientConfig({ region: "" }, {})).to.throw(ConfigError, /^region: /);
  });
});
