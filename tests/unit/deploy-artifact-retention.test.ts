/**
 * Retention tags of release artifacts (mocked S3): when latest.json moves, the artifacts it
 * names are tagged `zcp:retention=keep` and the one that dropped out `expire`, the exact
 * GetObjectTagging / PutObjectTagging sent; and the LatestPointer step does it only once the
 * pointer was written.
 */
import { expect } from "chai";
import {
  GetObjectCommand,
  GetObjectTaggingCommand,
  PutObjectCommand,
  PutObjectTaggingCommand,
  S3Client,
  type Tag,
} from "@aws-sdk/client-s3";
import { mockClient } from "aws-sdk-client-mock";
import { retainReleasedArtifacts } from "../../deploy/aws/artifacts.js";
import { serializeLatestPointer } from "../../deploy/aws/latest-pointer.js";
import { promoteLatestPointer } from "../../deploy/steps/latest-pointer.js";
import { awsError, fakeClock, offlineS3 } from "../fixtures/aws/clients.js";

const BUCKET = "zcp-web-dev-abc1234";
const key = (v: string) => `releases/web/${v}.tar.gz`;
const RETAIN = (value: string): Tag => ({ Key: "zcp:retention", Value: value });

/** GetObjectTagging answers from `tags` (a missing key is NoSuchKey); returns the puts sent. */
function withTags(mock: ReturnType<typeof mockClient>, tags: Record<string, Tag[]>) {
  mock.on(GetObjectTaggingCommand).callsFake((input: { Key: string }) => {
    const set = tags[input.Key];
    if (!set) throw awsError("NoSuchKey", 404);
    return { TagSet: set };
  });
  mock.on(PutObjectTaggingCommand).resolves({});
  return () => mock.commandCalls(PutObjectTaggingCommand).map((c) => c.args[0].input);
}

describe("deploy/aws/artifacts: retention tags", function () {
  const clock = fakeClock();
  const pacing = { sleep: clock.sleep, now: clock.now };

  it("keeps the new current and the previous artifact, expires the one that dropped out, and keeps other tags", async function () {
    const s3 = offlineS3();
    const mock = mockClient(s3);
    const puts = withTags(mock, {
      [key("v3")]: [RETAIN("expire")],
      [key("v2")]: [RETAIN("keep")],
      [key("v1")]: [{ Key: "team", Value: "shop" }, RETAIN("keep")],
    });
    const got = await retainReleasedArtifacts(s3, { bucket: BUCKET, app: "web", before: { version: "v2", previous: "v1" }, after: { version: "v3", previous: "v2" } }, pacing);
    expect(got).to.deep.equal({ kept: [key("v3"), key("v2")], released: [key("v1")], missing: [], failed: [] });
    // v2 already carries `keep`: nothing sent for it.
    expect(puts()).to.deep.equal([
      { Bucket: BUCKET, Key: key("v3"), Tagging: { TagSet: [RETAIN("keep")] } },
      { Bucket: BUCKET, Key: key("v1"), Tagging: { TagSet: [{ Key: "team", Value: "shop" }, RETAIN("expire")] } },
    ]);
  });

  it("expires nothing on a rollback to the previous release or a release of the same version", async function () {
    for (const after of [{ version: "v2", previous: "v3" }, { version: "v3", previous: "v2" }]) {
      const s3 = offlineS3();
      const puts = withTags(mockClient(s3), { [key("v3")]: [RETAIN("keep")], [key("v2")]: [RETAIN("keep")] });
      const got = await retainReleasedArtifacts(s3, { bucket: BUCKET, app: "web", before: { version: "v3", previous: "v2" }, after }, pacing);
      expect(got.released, JSON.stringify(after)).to.deep.equal([]);
      expect(puts(), JSON.stringify(after)).to.deep.equal([]);
    }
  });

  it("keeps an old artifact a rollback brings back, and expires the current one it leaves only if no longer named", async function () {
    const s3 = offlineS3();
    const puts = withTags(mockClient(s3), { [key("v1")]: [RETAIN("expire")], [key("v3")]: [RETAIN("keep")], [key("v2")]: [RETAIN("keep")] });
    const got = await retainReleasedArtifacts(s3, { bucket: BUCKET, app: "web", before: { version: "v3", previous: "v2" }, after: { version: "v1", previous: "v3" } }, pacing);
    expect(got).to.deep.include({ kept: [key("v1"), key("v3")], released: [key("v2")] });
    expect(puts().map((p) => [p.Key, p.Tagging?.TagSet])).to.deep.equal([
      [key("v1"), [RETAIN("keep")]],
      [key("v2"), [RETAIN("expire")]],
    ]);
  });

  it("reports an artifact that is gone as missing, without failing", async function () {
    const s3 = offlineS3();
    const puts = withTags(mockClient(s3), { [key("v2")]: [RETAIN("expire")] });
    const got = await retainReleasedArtifacts(s3, { bucket: BUCKET, app: "web", before: undefined, after: { version: "v2", previous: "v1" } }, pacing);
    expect(got).to.deep.equal({ kept: [key("v2")], released: [], missing: [key("v1")], failed: [] });
    expect(puts()).to.have.length(1);
  });

  it("does not fail the release when a tag cannot be set: it logs which, and sets the others", async function () {
    const s3 = offlineS3();
    const mock = mockClient(s3);
    withTags(mock, { [key("v2")]: [RETAIN("expire")], [key("v1")]: [RETAIN("keep")] });
    mock.on(PutObjectTaggingCommand, { Key: key("v2") }).rejects(awsError("AccessDenied", 403));
    const lines: string[] = [];
    const got = await retainReleasedArtifacts(s3, { bucket: BUCKET, app: "web", before: { version: "v1" }, after: { version: "v2", previous: "v1" } }, { ...pacing, log: (m) => lines.push(m) });
    expect(got.failed.map((f) => f.key)).to.deep.equal([key("v2")]);
    expect(got.kept).to.deep.equal([key("v1")]);
    expect(lines.join("\n")).to.match(new RegExp(`could not tag s3://${BUCKET}/releases/web/v2\\.tar\\.gz zcp:retention=keep .*AccessDenied`));
  });
});

describe("LatestPointer step: retention tags after the pointer moved (mocked S3)", function () {
  const previous = { version: "v2", key: key("v2"), sha256: "a".repeat(64), releasedAt: "2026-12-01T00:00:00.000Z", previous: "v1" };
  const inputs = {
    region: "eu-west-1",
    bucket: BUCKET,
    app: "web",
    version: "v3",
    key: key("v3"),
    sha256: "b".repeat(64),
    imageId: "",
    launchTemplateVersion: 0,
    expectedEtag: '"e2"',
  };
  let mock: ReturnType<typeof mockClient>;
  beforeEach(() => {
    mock = mockClient(S3Client);
    mock.on(GetObjectCommand).resolves({ Body: { transformToString: async () => serializeLatestPointer(previous) } as never, ETag: '"e2"' });
  });
  afterEach(() => mock.restore());

  it("tags v3 and v2 keep and v1 expire once latest.json names v3", async function () {
    const puts = withTags(mock, { [key("v3")]: [RETAIN("expire")], [key("v2")]: [RETAIN("keep")], [key("v1")]: [RETAIN("keep")] });
    mock.on(PutObjectCommand).resolves({ ETag: '"e3"' });
    const out = await promoteLatestPointer(inputs);
    expect(out.previousVersion).to.equal("v2");
    expect(puts().map((p) => [p.Key, p.Tagging?.TagSet])).to.deep.equal([
      [key("v3"), [RETAIN("keep")]],
      [key("v1"), [RETAIN("expire")]],
    ]);
  });

  it("changes no tag when the pointer moved meanwhile (the release lost the race)", async function () {
    const puts = withTags(mock, { [key("v3")]: [RETAIN("expire")], [key("v2")]: [RETAIN("keep")], [key("v1")]: [RETAIN("keep")] });
    mock.on(PutObjectCommand).rejects(awsError("PreconditionFailed", 412));
    const err = await promoteLatestPointer(inputs).then(() => undefined, (e: unknown) => e);
    expect(err).to.be.instanceOf(Error);
    expect(puts()).to.deep.equal([]);
  });
});
