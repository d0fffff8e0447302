/**
 * Launch template release: a version from the current default with only the image changed,
 * made default; nothing sent when the default already launches the image.
 */
import { expect } from "chai";
import {
  CreateLaunchTemplateVersionCommand,
  DescribeLaunchTemplateVersionsCommand,
  ModifyLaunchTemplateCommand,
} from "@aws-sdk/client-ec2";
import { mockClient } from "aws-sdk-client-mock";
import { buildCreateVersionInput, releaseImageToLaunchTemplate } from "../../deploy/aws/launch-template.js";
import { fakeClock, offlineEc2 } from "../fixtures/aws/clients.js";

const REQ = { launchTemplateId: "lt-0123", imageId: "ami-0new", app: "shop", version: "v2" };

function templateMock(versions: { def: { n: number; image: string }; latest: { n: number; image: string; description?: string } }) {
  const ec2 = offlineEc2();
  const mock = mockClient(ec2);
  mock.on(DescribeLaunchTemplateVersionsCommand, { Versions: ["$Default"] }).resolves({
    LaunchTemplateVersions: [{ LaunchTemplateId: "lt-0123", VersionNumber: versions.def.n, DefaultVersion: true, LaunchTemplateData: { ImageId: versions.def.image } }],
  });
  mock.on(DescribeLaunchTemplateVersionsCommand, { Versions: ["$Latest"] }).resolves({
    LaunchTemplateVersions: [
      {
        LaunchTemplateId: "lt-0123",
        VersionNumber: versions.latest.n,
        DefaultVersion: versions.latest.n === versions.def.n,
        ...(versions.latest.description ? { VersionDescription: versions.latest.description } : {}),
        LaunchTemplateData: { ImageId: versions.latest.image },
      },
    ],
  });
  mock.on(CreateLaunchTemplateVersionCommand).resolves({ LaunchTemplateVersion: { LaunchTemplateId: "lt-0123", VersionNumber: versions.latest.n + 1 } });
  mock.on(ModifyLaunchTemplateCommand).resolves({});
  return { ec2, mock };
}

describe("deploy/aws/launch-template", function () {
  const clock = fakeClock();
  const pacing = { sleep: clock.sleep, now: clock.now };

  it("creates a version from the current default with the new image and makes it default", async function () {
    const { ec2, mock } = templateMock({ def: { n: 4, image: "ami-0old" }, latest: { n: 4, image: "ami-0old" } });
    const got = await releaseImageToLaunchTemplate(ec2, REQ, pacing);
    expect(got).to.deep.equal({ launchTemplateId: "lt-0123", imageId: "ami-0new", previousDefaultVersion: 4, defaultVersion: 5, action: "created" });
    const [create] = mock.commandCalls(CreateLaunchTemplateVersionCommand);
    expect(create?.args[0].input).to.deep.equal(buildCreateVersionInput(REQ, 4));
    expect(create?.args[0].input).to.deep.include({
      LaunchTemplateId: "lt-0123",
      SourceVersion: "4",
      VersionDescription: "zcp shop v2 (ami-0new)",
      LaunchTemplateData: { ImageId: "ami-0new" },
    });
    expect(create?.args[0].input.ClientToken).to.match(/^zcp-[0-9a-f]{40}$/);
    expect(mock.commandCalls(ModifyLaunchTemplateCommand).map((c) => c.args[0].input)).to.deep.equal([{ LaunchTemplateId: "lt-0123", DefaultVersion: "5" }]);
    expect(mock.commandCalls(DescribeLaunchTemplateVersionsCommand)[0]?.args[0].input).to.deep.equal({ LaunchTemplateId: "lt-0123", Versions: ["$Default"] });
  });

  it("does nothing when the default version already launches the image", async function () {
    const { ec2, mock } = templateMock({ def: { n: 5, image: "ami-0new" }, latest: { n: 5, image: "ami-0new" } });
    const got = await releaseImageToLaunchTemplate(ec2, REQ, pacing);
    expect(got).to.deep.include({ action: "unchanged", defaultVersion: 5, previousDefaultVersion: 5 });
    expect(mock.commandCalls(CreateLaunchTemplateVersionCommand)).to.have.length(0);
    expect(mock.commandCalls(ModifyLaunchTemplateCommand)).to.have.length(0);
    expect(mock.calls()).to.have.length(1);
  });

  it("adopts the version a failed attempt created instead of creating another", async function () {
    const { ec2, mock } = templateMock({ def: { n: 4, image: "ami-0old" }, latest: { n: 5, image: "ami-0new", description: "zcp shop v2 (ami-0new)" } });
    const got = await releaseImageToLaunchTemplate(ec2, REQ, pacing);
    expect(got).to.deep.include({ action: "adopted", defaultVersion: 5, previousDefaultVersion: 4 });
    expect(mock.commandCalls(CreateLaunchTemplateVersionCommand)).to.have.length(0);
    expect(mock.commandCalls(ModifyLaunchTemplateCommand).map((c) => c.args[0].input)).to.deep.equal([{ LaunchTemplateId: "lt-0123", DefaultVersion: "5" }]);
  });

  it("does not adopt a newer version someone else made with other settings", async function () {
    const { ec2, mock } = templateMock({ def: { n: 4, image: "ami-0old" }, latest: { n: 5, image: "ami-0new", description: "hand-made" } });
    const got = await releaseImageToLaunchTemplate(ec2, REQ, pacing);
    expect(got).to.deep.include({ action: "created", defaultVersion: 6 });
    expect(mock.commandCalls(CreateLaunchTemplateVersionCommand)[0]?.args[0].input.SourceVersion).to.equal("4");
  });
});
