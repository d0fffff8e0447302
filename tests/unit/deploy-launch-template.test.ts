/**
 * LaunchTemplateRelease: new instances launch the release image because the image parameter
 * the launch template resolves from (`resolve:ssm:`) names it. One PutParameter, read back
 * until SSM stored it; nothing sent when it already names the image; nothing ever sent to the
 * launch template.
 */
import { expect } from "chai";
import { EC2Client } from "@aws-sdk/client-ec2";
import { GetObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { GetParameterCommand, PutParameterCommand, SSMClient } from "@aws-sdk/client-ssm";
import { mockClient } from "aws-sdk-client-mock";
import { buildPutImageParameterInput, moveImageParameter } from "../../deploy/aws/image-parameter.js";
import { serializeLatestPointer } from "../../deploy/aws/latest-pointer.js";
import { releaseTemplate } from "../../deploy/steps/launch-template-release.js";
import { PointerRaceError } from "../../shared/errors.js";
import { awsError, fakeClock, offlineSsm } from "../fixtures/aws/clients.js";

const NAME = "/zcp/shop/dev/image-id";
const REQ = { name: NAME, imageId: "ami-0new" };

/** GetParameter answers, in order (the last one repeats). */
function parameterMock(reads: ({ version: number; imageId: string } | "missing")[], putVersion?: number) {
  const ssm = offlineSsm();
  const mock = mockClient(ssm);
  let n = 0;
  mock.on(GetParameterCommand).callsFake(() => {
    const r = reads[Math.min(n++, reads.length - 1)];
    if (r === undefined || r === "missing") throw awsError("ParameterNotFound");
    return { Parameter: { Name: NAME, Type: "String", DataType: "aws:ec2:image", Value: r.imageId, Version: r.version } };
  });
  mock.on(PutParameterCommand).resolves(putVersion === undefined ? {} : { Version: putVersion, Tier: "Standard" });
  return { ssm, mock };
}

describe("deploy/aws/image-parameter (LaunchTemplateRelease)", function () {
  const clock = fakeClock();
  const pacing = { sleep: clock.sleep, now: clock.now };

  it("writes the release image into the parameter, reads it back, and names the version and the previous image", async function () {
    const { ssm, mock } = parameterMock([{ version: 4, imageId: "ami-0old" }, { version: 5, imageId: "ami-0new" }], 5);
    const got = await moveImageParameter(ssm, REQ, pacing);
    expect(got).to.deep.equal({ name: NAME, imageId: "ami-0new", version: 5, previousImageId: "ami-0old", action: "moved" });
    const puts = mock.commandCalls(PutParameterCommand).map((c) => c.args[0].input);
    expect(puts).to.deep.equal([buildPutImageParameterInput(NAME, "ami-0new")]);
    expect(puts[0]).to.deep.equal({ Name: NAME, Value: "ami-0new", Type: "String", DataType: "aws:ec2:image", Overwrite: true });
  });

  it("sends nothing when the parameter already names the image (a retried step)", async function () {
    const { ssm, mock } = parameterMock([{ version: 5, imageId: "ami-0new" }]);
    const got = await moveImageParameter(ssm, REQ, pacing);
    expect(got).to.deep.include({ action: "unchanged", version: 5 });
    expect(mock.commandCalls(PutParameterCommand)).to.have.length(0);
  });

  it("waits out SSM's asynchronous validation of an aws:ec2:image value", async function () {
    // PutParameter answers 200 before the value is stored (API reference, PutParameter, DataType).
    const { ssm } = parameterMock([{ version: 4, imageId: "ami-0old" }, { version: 4, imageId: "ami-0old" }, { version: 4, imageId: "ami-0old" }, { version: 5, imageId: "ami-0new" }], 5);
    const got = await moveImageParameter(ssm, REQ, pacing);
    expect(got).to.deep.include({ action: "moved", version: 5, previousImageId: "ami-0old" });
  });

  it("fails naming the parameter and the image when SSM never stores the value (not an available AMI)", async function () {
    const { ssm } = parameterMock([{ version: 4, imageId: "ami-0old" }], 5);
    let caught: unknown;
    try {
      await moveImageParameter(ssm, REQ, pacing, { validationTimeoutMs: 30_000 });
    } catch (err) {
      caught = err;
    }
    expect(String(caught)).to.match(/Moving image parameter \/zcp\/shop\/dev\/image-id failed: SSM did not store ami-0new as version 5 \(it still names ami-0old\)/);
  });

  it("refuses, writing nothing, when the foundation has not made the parameter", async function () {
    const { ssm, mock } = parameterMock(["missing"]);
    let caught: unknown;
    try {
      await moveImageParameter(ssm, REQ, pacing);
    } catch (err) {
      caught = err;
    }
    expect(String(caught)).to.match(/\/zcp\/shop\/dev\/image-id failed: it does not exist; run the foundation's `pulumi up` first/);
    expect(mock.commandCalls(PutParameterCommand)).to.have.length(0);
  });

  it("reports, and does not overwrite, a parameter another writer moved right after this one", async function () {
    const { ssm, mock } = parameterMock([{ version: 4, imageId: "ami-0old" }, { version: 6, imageId: "ami-0other" }], 5);
    let caught: unknown;
    try {
      await moveImageParameter(ssm, REQ, pacing);
    } catch (err) {
      caught = err;
    }
    expect(String(caught)).to.match(/it names ami-0other \(version 6\) instead of ami-0new: another writer moved it/);
    expect(mock.commandCalls(PutParameterCommand)).to.have.length(1);
  });

  describe("the step", function () {
    const INPUTS = {
      region: "us-east-1",
      app: "shop",
      bucket: "zcp-artifacts",
      expectedLatestEtag: '"etag-1"',
      imageParameterName: NAME,
      imageId: "ami-0new",
      version: "v2",
    };
    const pointer = serializeLatestPointer({ version: "v1", key: "releases/shop/v1.tar.gz", sha256: "d".repeat(64), imageId: "ami-0old", releasedAt: "2026-04-26T10:30:00Z" });
    // The step builds its own clients: mock every client of these classes.
    let s3: ReturnType<typeof mockClient>;
    let ssm: ReturnType<typeof mockClient>;
    let ec2: ReturnType<typeof mockClient>;
    beforeEach(function () {
      s3 = mockClient(S3Client);
      ssm = mockClient(SSMClient);
      ec2 = mockClient(EC2Client);
    });
    afterEach(function () {
      s3.restore();
      ssm.restore();
      ec2.restore();
    });

    it("moves the image parameter and names its version and the previous image; sends nothing to the launch template", async function () {
      s3.on(GetObjectCommand).resolves({ Body: { transformToString: async () => pointer } as never, ETag: '"etag-1"' });
      let reads = 0;
      ssm.on(GetParameterCommand).callsFake(() => ({ Parameter: { Name: NAME, Value: reads++ === 0 ? "ami-0old" : "ami-0new", Version: reads === 1 ? 4 : 5 } }));
      ssm.on(PutParameterCommand).resolves({ Version: 5 });
      const out = await releaseTemplate(INPUTS);
      expect(out).to.deep.equal({ ...INPUTS, parameterVersion: 5, previousImageId: "ami-0old" });
      expect(ssm.commandCalls(PutParameterCommand).map((c) => c.args[0].input)).to.deep.equal([buildPutImageParameterInput(NAME, "ami-0new")]);
      expect(ec2.calls(), "no EC2 call, let alone a launch-template write").to.have.length(0);
    });

    it("writes nothing when latest.json moved while the release ran", async function () {
      s3.on(GetObjectCommand).resolves({ Body: { transformToString: async () => pointer } as never, ETag: '"etag-other"' });
      const err = await releaseTemplate(INPUTS).then(
        () => undefined,
        (e: unknown) => e as Error,
      );
      expect(err).to.be.instanceOf(PointerRaceError);
      expect(err?.message).to.match(/the image parameter \/zcp\/shop\/dev\/image-id was left as it was and latest\.json was not touched/);
      expect(ssm.calls()).to.have.length(0);
      expect(ec2.calls()).to.have.length(0);
    });
  });
});
