/**
 * One retry layer: a request goes through the SDK's retry strategy (adaptive, as
 * `deploy/aws/clients.ts` configures every client) and nothing else. A real SSMClient talks to
 * a throttling SSM endpoint on 127.0.0.1 that counts what it receives, so the SDK's retry
 * middleware really runs (a mocked `send` would skip it).
 *
 * The endpoint speaks SSM's awsJson1_1 protocol: a refused call is HTTP 400 with
 * `x-amzn-ErrorType: ThrottlingException` (AWS SSM API Reference, "Common Errors":
 * ThrottlingException, HTTP 400), which the SDK classifies as throttling
 * (@smithy/service-error-classification THROTTLING_ERROR_CODES).
 */
import { expect } from "chai";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { SendCommandCommand } from "@aws-sdk/client-ssm";
import { awsCall } from "../../deploy/aws/call.js";
import { createSsmClient } from "../../deploy/aws/clients.js";
import { StepError } from "../../shared/errors.js";
import { fakeClock } from "../fixtures/aws/clients.js";

/** An SSM endpoint that refuses the first `throttled` requests, then accepts SendCommand. */
async function throttlingSsm(throttled: number): Promise<{ url: string; requests: () => number; close: () => Promise<void> }> {
  let requests = 0;
  const server = http.createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      requests++;
      if (requests <= throttled) {
        res.writeHead(400, { "content-type": "application/x-amz-json-1.1", "x-amzn-errortype": "ThrottlingException" });
        res.end(JSON.stringify({ __type: "ThrottlingException", message: "Rate exceeded" }));
        return;
      }
      res.writeHead(200, { "content-type": "application/x-amz-json-1.1" });
      res.end(JSON.stringify({ Command: { CommandId: "cmd-1" } }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests: () => requests,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

const SEND = new SendCommandCommand({ DocumentName: "zcp-shop-dev-deploy", InstanceIds: ["i-0000000000000000a"] });

describe("one retry layer: the SDK's adaptive retry, and no second loop around it", function () {
  // The SDK sleeps for real between attempts (a few seconds in all); nothing here is timed.
  this.timeout(120_000);

  it("a request throttled every time is sent maxAttempts (5) times in all, not 6 × 5", async function () {
    const ssm = await throttlingSsm(Number.MAX_SAFE_INTEGER);
    const client = createSsmClient({ region: "us-east-1", endpoint: ssm.url, credentials: { accessKeyId: "testing", secretAccessKey: "testing" } });
    const clock = fakeClock();
    try {
      const err = await awsCall("SSM deploy to", "i-0000000000000000a", () => client.send(SEND), clock).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).to.be.instanceOf(StepError);
      expect((err as Error).message).to.match(/^SSM deploy to i-0000000000000000a failed: ThrottlingException: Rate exceeded/);
      expect(ssm.requests(), "requests that reached SSM").to.equal(5);
      expect(clock.sleeps, "zcp itself never slept to retry").to.deep.equal([]);
    } finally {
      client.destroy();
      await ssm.close();
    }
  });

  it("a burst of two refusals is absorbed by the SDK: three requests, one result", async function () {
    const ssm = await throttlingSsm(2);
    const client = createSsmClient({ region: "us-east-1", endpoint: ssm.url, credentials: { accessKeyId: "testing", secretAccessKey: "testing" } });
    try {
      const out = await awsCall("SSM deploy to", "i-0000000000000000a", () => client.send(SEND));
      expect(out.Command?.CommandId).to.equal("cmd-1");
      expect(ssm.requests()).to.equal(3);
    } finally {
      client.destroy();
      await ssm.close();
    }
  });
});
