/**
 * Points new instances at the release image: a launch template version copied from the
 * current default with only the image changed, made the default. The foundation ignores the
 * template's default-version drift, so these changes survive the next `pulumi up`.
 */
import {
  CreateLaunchTemplateVersionCommand,
  DescribeLaunchTemplatesCommand,
  DescribeLaunchTemplateVersionsCommand,
  ModifyLaunchTemplateCommand,
  type CreateLaunchTemplateVersionCommandInput,
  type DescribeLaunchTemplateVersionsCommandInput,
  type EC2Client,
  type LaunchTemplateVersion,
  type ModifyLaunchTemplateCommandInput,
} from "@aws-sdk/client-ec2";
import { createHash } from "node:crypto";
import { StepError } from "../../shared/errors.js";
import { awsCall, type Pacing } from "./call.js";

export interface TemplateVersion {
  launchTemplateId: string;
  versionNumber: number;
  imageId?: string;
  description?: string;
  isDefault: boolean;
}

function templateVersion(v: LaunchTemplateVersion, launchTemplateId: string): TemplateVersion {
  return {
    launchTemplateId: v.LaunchTemplateId ?? launchTemplateId,
    versionNumber: v.VersionNumber ?? 0,
    ...(v.LaunchTemplateData?.ImageId ? { imageId: v.LaunchTemplateData.ImageId } : {}),
    ...(v.VersionDescription ? { description: v.VersionDescription } : {}),
    isDefault: v.DefaultVersion === true,
  };
}

export function buildDescribeVersionsInput(launchTemplateId: string, versions: string[]): DescribeLaunchTemplateVersionsCommandInput {
  return { LaunchTemplateId: launchTemplateId, Versions: versions };
}

async function describeVersions(ec2: EC2Client, launchTemplateId: string, versions: string[], pacing: Pacing): Promise<TemplateVersion[]> {
  const out = await awsCall(
    "Reading launch template",
    launchTemplateId,
    () => ec2.send(new DescribeLaunchTemplateVersionsCommand(buildDescribeVersionsInput(launchTemplateId, versions))),
    pacing,
  );
  return (out.LaunchTemplateVersions ?? []).map((v) => templateVersion(v, launchTemplateId));
}

/**
 * The template's default version number from DescribeLaunchTemplates, which (unlike
 * DescribeLaunchTemplateVersions) returns no launch data, so no user data: what a preview,
 * whose role may not read user data, can know of the template.
 */
export async function describeDefaultVersionNumber(ec2: EC2Client, launchTemplateId: string, pacing: Pacing = {}): Promise<number> {
  const out = await awsCall(
    "Reading launch template",
    launchTemplateId,
    () => ec2.send(new DescribeLaunchTemplatesCommand({ LaunchTemplateIds: [launchTemplateId] })),
    pacing,
  );
  const n = out.LaunchTemplates?.[0]?.DefaultVersionNumber;
  if (n === undefined) throw new StepError("Reading launch template", launchTemplateId, new Error("it has no default version"));
  return n;
}

export async function describeDefaultVersion(ec2: EC2Client, launchTemplateId: string, pacing: Pacing = {}): Promise<TemplateVersion> {
  const [v] = await describeVersions(ec2, launchTemplateId, ["$Default"], pacing);
  if (!v) throw new StepError("Reading launch template", launchTemplateId, new Error("it has no default version"));
  return { ...v, isDefault: true };
}

export async function describeLatestVersion(ec2: EC2Client, launchTemplateId: string, pacing: Pacing = {}): Promise<TemplateVersion> {
  const [v] = await describeVersions(ec2, launchTemplateId, ["$Latest"], pacing);
  if (!v) throw new StepError("Reading launch template", launchTemplateId, new Error("it has no versions"));
  return v;
}

export interface TemplateImageRequest {
  launchTemplateId: string;
  imageId: string;
  app: string;
  version: string;
}

/** The version description: how a person finds which release a template version came from. */
export function templateVersionDescription(app: string, version: string, imageId: string): string {
  return `zcp ${app} ${version} (${imageId})`.slice(0, 255);
}

/**
 * The same request sent twice (a retried provider create) returns the same version instead
 * of a second one, because EC2 deduplicates by ClientToken.
 */
export function templateClientToken(req: TemplateImageRequest, sourceVersion: number): string {
  const digest = createHash("sha256")
    .update([req.launchTemplateId, sourceVersion, req.imageId, req.app, req.version].join("\n"))
    .digest("hex");
  return `zcp-${digest.slice(0, 40)}`;
}

export function buildCreateVersionInput(req: TemplateImageRequest, sourceVersion: number): CreateLaunchTemplateVersionCommandInput {
  return {
    LaunchTemplateId: req.launchTemplateId,
    SourceVersion: String(sourceVersion),
    VersionDescription: templateVersionDescription(req.app, req.version, req.imageId),
    LaunchTemplateData: { ImageId: req.imageId },
    ClientToken: templateClientToken(req, sourceVersion),
  };
}

export function buildSetDefaultVersionInput(launchTemplateId: string, versionNumber: number): ModifyLaunchTemplateCommandInput {
  return { LaunchTemplateId: launchTemplateId, DefaultVersion: String(versionNumber) };
}

/** New version from `sourceVersion` (the current default) with only the image replaced. */
export async function createVersionWithImage(
  ec2: EC2Client,
  req: TemplateImageRequest,
  sourceVersion: number,
  pacing: Pacing = {},
): Promise<TemplateVersion> {
  const input = buildCreateVersionInput(req, sourceVersion);
  const out = await awsCall("Creating launch template version of", req.launchTemplateId, () => ec2.send(new CreateLaunchTemplateVersionCommand(input)), pacing);
  const v = out.LaunchTemplateVersion;
  if (!v?.VersionNumber) {
    throw new StepError("Creating launch template version of", req.launchTemplateId, new Error("EC2 returned no version number"));
  }
  return templateVersion(v, req.launchTemplateId);
}

export async function setDefaultVersion(ec2: EC2Client, launchTemplateId: string, versionNumber: number, pacing: Pacing = {}): Promise<void> {
  await awsCall(
    "Setting the default version of launch template",
    launchTemplateId,
    () => ec2.send(new ModifyLaunchTemplateCommand(buildSetDefaultVersionInput(launchTemplateId, versionNumber))),
    pacing,
  );
}

export interface TemplateRelease {
  launchTemplateId: string;
  imageId: string;
  /** The default version after the call. */
  defaultVersion: number;
  /** The default version before the call. */
  previousDefaultVersion: number;
  /** What happened: nothing (already default), reused an orphaned latest version, or created one. */
  action: "unchanged" | "adopted" | "created";
}

/**
 * Makes the template's default version launch `imageId`. Idempotent: when the default version
 * already has the image nothing is sent; when a previous attempt created the version but
 * failed before making it default, that version is adopted instead of creating another.
 */
export async function releaseImageToLaunchTemplate(ec2: EC2Client, req: TemplateImageRequest, pacing: Pacing = {}): Promise<TemplateRelease> {
  const current = await describeDefaultVersion(ec2, req.launchTemplateId, pacing);
  const base = { launchTemplateId: req.launchTemplateId, imageId: req.imageId, previousDefaultVersion: current.versionNumber };
  if (current.imageId === req.imageId) {
    return { ...base, defaultVersion: current.versionNumber, action: "unchanged" };
  }
  const latest = await describeLatestVersion(ec2, req.launchTemplateId, pacing);
  if (
    latest.versionNumber > current.versionNumber &&
    latest.imageId === req.imageId &&
    latest.description === templateVersionDescription(req.app, req.version, req.imageId)
  ) {
    await setDefaultVersion(ec2, req.launchTemplateId, latest.versionNumber, pacing);
    return { ...base, defaultVersion: latest.versionNumber, action: "adopted" };
  }
  const created = await createVersionWithImage(ec2, req, current.versionNumber, pacing);
  await setDefaultVersion(ec2, req.launchTemplateId, created.versionNumber, pacing);
  return { ...base, defaultVersion: created.versionNumber, action: "created" };
}
