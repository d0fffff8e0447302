/**
 * `zcp promote` when the source bucket refuses the read (mocked S3: the emulator grants every
 * read): without list rights S3 answers 403 for a missing version too, so the promotion stops
 * with exit 2, says the version is missing or unreadable, names the two settings that grant
 * the read, and writes nothing to the target.
 */
import { HeadObjectCommand, PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { expect } from "chai";
import { mockClient } from "aws-sdk-client-mock";
import { promoteArtifact } from "../../deploy/promote.js";
import { ConfigError } from "../../shared/errors.js";
import { awsError, offlineS3 } from "../fixtures/aws/clients.js";

describe("zcp promote: a source it may not read (mocked S3)", function () {
  it("stops with --version naming promoteReaders and promoteFrom, and copies nothing", async function () {
    const dev = offlineS3();
    const prod = offlineS3();
    mockClient(dev).on(HeadObjectCommand).rejects(awsError("AccessDenied", 403));
    const prodMock = mockClient(prod);
    const err = await promoteArtifact(
      { environment: "dev", app: "web", bucket: "zcp-web-dev-abc1234", s3: dev as S3Client },
      { environment: "prod", app: "web", bucket: "zcp-web-prod-def5678", s3: prod as S3Client },
      "v1.4.2",
    ).then(() => undefined, (e: unknown) => e);
    expect(err).to.be.instanceOf(ConfigError);
    expect((err as ConfigError).field).to.equal("--version");
    expect((err as Error).message).to.match(/s3:\/\/zcp-web-dev-abc1234\/releases\/web\/v1\.4\.2\.tar\.gz is missing or this session may not read it \(403\)/);
    expect((err as Error).message).to.match(/zcp:artifacts\.promoteReaders .* zcp:artifacts\.promoteFrom names zcp-web-dev-abc1234/);
    expect(prodMock.commandCalls(PutObjectCommand)).to.have.length(0);
  });
});
