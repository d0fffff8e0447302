/**
 * The latest pointer's compare-and-swap: IfMatch with the ETag read, IfNoneMatch when there
 * was none, and a readable PointerRaceError when another release moved it first.
 */
import { expect } from "chai";
import { GetObjectCommand, PutObjectCommand } from "@aws-sdk/client-s3";
import { mockClient } from "aws-sdk-client-mock";
import {
  nextLatestPointer,
  readLatestPointer,
  serializeLatestPointer,
  writeLatestPointer,
  type LatestPointer,
} from "../../deploy/aws/latest-pointer.js";
import { PointerRaceError } from "../../shared/errors.js";
import { awsError, fakeClock, offlineS3 } from "../fixtures/aws/clients.js";

const POINTER: LatestPointer = {
  version: "v2",
  key: "releases/shop/v2.tar.gz",
  sha256: "d".repeat(64),
  imageId: "ami-0new",
  launchTemplateVersion: 5,
  releasedAt: "2026-04-26T10:30:00Z",
  previous: "v1",
};

/** The part of the SDK's streaming body the reader uses. */
function body(text: string) {
  return { transformToString: async () => text } as never;
}

describe("deploy/aws/latest-pointer", function () {
  const clock = fakeClock();
  const pacing = { sleep: clock.sleep, now: clock.now };

  it("reads the pointer and its ETag, and reports none when the key is missing", async function () {
    const s3 = offlineS3();
    const mock = mockClient(s3);
    mock
      .on(GetObjectCommand)
      .resolvesOnce({ Body: body(serializeLatestPointer(POINTER)), ETag: '"etag-1"' })
      .rejects(awsError("NoSuchKey", 404));
    expect(await readLatestPointer(s3, "zcp-artifacts", "shop", pacing)).to.deep.equal({ pointer: POINTER, etag: '"etag-1"' });
    expect(await readLatestPointer(s3, "zcp-artifacts", "shop", pacing)).to.equal(undefined);
    expect(mock.commandCalls(GetObjectCommand)[0]?.args[0].input).to.deep.equal({ Bucket: "zcp-artifacts", Key: "releases/shop/latest.json" });
  });

  it("writes with IfMatch on the ETag it read", async function () {
    const s3 = offlineS3();
    const mock = mockClient(s3);
    mock.on(PutObjectCommand).resolves({ ETag: '"etag-2"' });
    expect(await writeLatestPointer(s3, "zcp-artifacts", "shop", POINTER, '"etag-1"', pacing)).to.deep.equal({ etag: '"etag-2"' });
    expect(mock.commandCalls(PutObjectCommand)[0]?.args[0].input).to.deep.equal({
      Bucket: "zcp-artifacts",
      Key: "releases/shop/latest.json",
      Body: serializeLatestPointer(POINTER),
      ContentType: "application/json",
      CacheControl: "no-cache",
      IfMatch: '"etag-1"',
    });
  });

  it("writes with IfNoneMatch when no pointer existed", async function () {
    const s3 = offlineS3();
    const mock = mockClient(s3);
    mock.on(PutObjectCommand).resolves({ ETag: '"etag-1"' });
    await writeLatestPointer(s3, "zcp-artifacts", "shop", POINTER, undefined, pacing);
    const input = mock.commandCalls(PutObjectCommand)[0]?.args[0].input;
    expect(input?.IfNoneMatch).to.equal("*");
    expect(input).to.not.have.property("IfMatch");
  });

  it("throws PointerRaceError naming the version there now when the ETag no longer matches (412)", async function () {
    const s3 = offlineS3();
    const mock = mockClient(s3);
    mock.on(PutObjectCommand).rejects(awsError("PreconditionFailed", 412, "At least one of the pre-conditions you specified did not hold"));
    mock.on(GetObjectCommand).resolves({
      Body: body(serializeLatestPointer({ ...POINTER, version: "v3", releasedAt: "2026-04-26T10:29:00Z" })),
      ETag: '"etag-9"',
    });
    const err = await writeLatestPointer(s3, "zcp-artifacts", "shop", POINTER, '"etag-1"', pacing).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(err).to.be.instanceOf(PointerRaceError);
    expect(err?.message).to.equal(
      's3://zcp-artifacts/releases/shop/latest.json moved while this release ran (expected ETag "etag-1"); ' +
        'it now points to v3 (released 2026-04-26T10:29:00Z, ETag "etag-9"). ' +
        "Not overwriting it with v2: check which release should be latest and run it again.",
    );
    expect(mock.commandCalls(PutObjectCommand)).to.have.length(1);
  });

  it("succeeds on a 412 when the pointer read back is the one this release wrote (a retried PUT whose first response was lost; mocked S3)", async function () {
    const s3 = offlineS3();
    const mock = mockClient(s3);
    // The first PUT landed but its response was lost (a 500); the SDK's retry of it met a 412,
    // since its IfMatch no longer holds. The mocked client skips the SDK's retry middleware, so
    // it answers with what that retry returns.
    mock.on(PutObjectCommand).rejects(awsError("PreconditionFailed", 412, "At least one of the pre-conditions you specified did not hold"));
    mock.on(GetObjectCommand).resolves({ Body: body(serializeLatestPointer(POINTER)), ETag: '"etag-2"' });
    const out = await writeLatestPointer(s3, "zcp-artifacts", "shop", POINTER, '"etag-1"', pacing);
    expect(out).to.deep.equal({ etag: '"etag-2"' });
    expect(mock.commandCalls(GetObjectCommand), "the pointer was read back").to.have.length(1);
  });

  it("treats a concurrent conditional write (409) as a lost race too", async function () {
    const s3 = offlineS3();
    const mock = mockClient(s3);
    mock.on(PutObjectCommand).rejects(awsError("ConditionalRequestConflict", 409));
    mock.on(GetObjectCommand).rejects(awsError("NoSuchKey", 404));
    const err = await writeLatestPointer(s3, "zcp-artifacts", "shop", POINTER, undefined, pacing).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(err).to.be.instanceOf(PointerRaceError);
    expect(err?.message).to.match(/\(expected no pointer yet\); it no longer exists\./);
  });

  it("records the replaced version as previous", function () {
    const { previous: _p, ...release } = POINTER;
    expect(nextLatestPointer({ ...POINTER, version: "v1" }, release).previous).to.equal("v1");
    expect(nextLatestPointer(undefined, release)).to.not.have.property("previous");
    // Re-releasing the same version keeps what it replaced the first time.
    expect(nextLatestPointer(POINTER, release).previous).to.equal("v1");
  });

  it("numbers releases: each pointer's sequence is the one it replaced plus one, read back as written", async function () {
    const { previous: _p, ...release } = POINTER;
    const first = nextLatestPointer(undefined, { ...release, version: "v1" });
    expect(first.sequence).to.equal(1);
    const second = nextLatestPointer(first, release);
    expect(second.sequence).to.equal(2);
    // A rollback is a release too: it moves forward in the sequence while going back in version.
    expect(nextLatestPointer(second, { ...release, version: "v1" })).to.include({ version: "v1", previous: "v2", sequence: 3 });
    // A pointer written before sequences existed counts as 0.
    expect(nextLatestPointer({ ...POINTER, version: "v0" }, release).sequence).to.equal(1);

    const s3 = offlineS3();
    const mock = mockClient(s3);
    mock.on(GetObjectCommand).resolves({ Body: body(serializeLatestPointer(second)), ETag: '"etag-9"' });
    expect((await readLatestPointer(s3, "zcp-artifacts", "shop", pacing))?.pointer).to.deep.equal(second);
    mock.on(GetObjectCommand).resolves({ Body: body(JSON.stringify({ ...second, sequence: "2; reboot" })), ETag: '"etag-9"' });
    expect((await readLatestPointer(s3, "zcp-artifacts", "shop", pacing))?.pointer).to.not.have.property("sequence");
    mock.restore();
  });
});
