/**
 * Baking the release image: find the image of a version (so a retried bake reuses it), create
 * it from a healthy instance, wait until it is available, and prune old images without ever
 * removing one that the image parameter (now or in its kept history), a launch template
 * version or a live instance still uses.
 */
import type { SSMClient } from "@aws-sdk/client-ssm";
import {
  CreateImageCommand,
  CreateTagsCommand,
  DeleteSnapshotCommand,
  DeregisterImageCommand,
  DescribeImagesCommand,
  DescribeInstancesCommand,
  DescribeLaunchTemplateVersionsCommand,
  type CreateImageCommandInput,
  type DescribeImagesCommandInput,
  type DescribeInstancesCommandInput,
  type DeregisterImageCommandInput,
  type DescribeLaunchTemplateVersionsCommandInput,
  type EC2Client,
  type Image,
} from "@aws-sdk/client-ec2";
import { ConfigError, DeadlineExceededError, StepError } from "../../shared/errors.js";
import { imageName } from "../../shared/naming.js";
import { poll } from "../../shared/retry.js";
import { TAG_APP, TAG_ENV, TAG_IMAGE_STAGE, TAG_SHA256, TAG_VERSION, baseTags, type ImageStage } from "../../shared/tags.js";
import { awsCall, awsErrorName, isThrottledOrTransient, pacingOptions, tagList, tagRecord, type Pacing } from "./call.js";
import { imageParameterHistory } from "./image-parameter.js";

export interface ImageSummary {
  imageId: string;
  name: string;
  /** `pending`, `available`, `failed`, … */
  state: string;
  creationDate?: string;
  tags: Record<string, string>;
  snapshotIds: string[];
  stateReason?: string;
}

/** The release stage an image's tags record (see TAG_IMAGE_STAGE); untagged images are released. */
export function imageStage(img: Pick<ImageSummary, "tags">): ImageStage {
  const stage = img.tags[TAG_IMAGE_STAGE];
  return stage === "candidate" || stage === "retired" ? stage : "released";
}

/** States an image never leaves for `available`. */
const BROKEN_STATES = new Set(["failed", "error", "invalid", "deregistered", "disabled"]);

export function imageSummary(img: Image): ImageSummary {
  const snapshotIds = (img.BlockDeviceMappings ?? []).map((b) => b.Ebs?.SnapshotId).filter((s): s is string => !!s);
  return {
    imageId: img.ImageId ?? "",
    name: img.Name ?? "",
    state: img.State ?? "unknown",
    ...(img.CreationDate ? { creationDate: img.CreationDate } : {}),
    tags: tagRecord(img.Tags),
    snapshotIds,
    ...(img.StateReason?.Message ? { stateReason: img.StateReason.Message } : {}),
  };
}

/** Newest first; ids break ties so the order never depends on the API's. */
export function newestFirst(a: ImageSummary, b: ImageSummary): number {
  const byDate = (b.creationDate ?? "").localeCompare(a.creationDate ?? "");
  return byDate !== 0 ? byDate : b.imageId.localeCompare(a.imageId);
}

// ---------------------------------------------------------------- find

export function buildFindImagesInput(app: string, env: string, version?: string, nextToken?: string): DescribeImagesCommandInput {
  return {
    Owners: ["self"],
    Filters: [
      { Name: `tag:${TAG_APP}`, Values: [app] },
      { Name: `tag:${TAG_ENV}`, Values: [env] },
      ...(version !== undefined ? [{ Name: `tag:${TAG_VERSION}`, Values: [version] }] : []),
    ],
    ...(nextToken ? { NextToken: nextToken } : {}),
  };
}

/** Every zcp image of the app/env (or of one version), in no particular order. */
export async function listImages(
  ec2: EC2Client,
  q: { app: string; env: string; version?: string },
  pacing: Pacing = {},
): Promise<ImageSummary[]> {
  const out: ImageSummary[] = [];
  let token: string | undefined;
  do {
    const input = buildFindImagesInput(q.app, q.env, q.version, token);
    const page = await awsCall("Image lookup for", `${q.app}/${q.env}`, () => ec2.send(new DescribeImagesCommand(input)), pacing);
    out.push(...(page.Images ?? []).map(imageSummary));
    token = page.NextToken || undefined;
  } while (token);
  return out;
}

/**
 * The image already baked for this version, if any: available before pending, newest first.
 * Failed images are ignored so a retry bakes a fresh one, and so are retired candidates (their
 * release failed). A candidate an interrupted release left behind is adopted: it was baked
 * from an instance that passed the canary on this very version.
 */
export async function findImageForVersion(
  ec2: EC2Client,
  q: { app: string; env: string; version: string },
  pacing: Pacing = {},
): Promise<ImageSummary | undefined> {
  const images = (await listImages(ec2, q, pacing)).filter((i) => !BROKEN_STATES.has(i.state) && imageStage(i) !== "retired");
  images.sort((a, b) => Number(b.state === "available") - Number(a.state === "available") || newestFirst(a, b));
  return images[0];
}

// ---------------------------------------------------------------- create

export interface BakeImageRequest {
  /** A healthy instance that runs the released version. */
  instanceId: string;
  app: string;
  env: string;
  version: string;
  sha256: string;
  /**
   * Snapshot without stopping the instance. From config; a reboot gives a consistent file
   * system but takes the instance out of service for a minute.
   */
  noReboot: boolean;
  /** Makes the name unique. @default the current UTC time, `20260426T101500Z` */
  stamp?: string;
  /**
   * Tag the snapshots in the CreateImage request itself, so they are never untagged. The local
   * emulator does not implement snapshot TagSpecifications on CreateImage; with `false`,
   * `bakeImage` tags the snapshots with CreateTags once the image is available.
   * @default true
   */
  tagSnapshotsOnCreate?: boolean;
  /**
   * `candidate` for an image baked while the fleet still rolls: it only becomes the release
   * image (`promoteImage`) once every batch is healthy. @default "released"
   */
  stage?: ImageStage;
}

/** `2026-04-26T10:15:00.123Z` → `20260426T101500Z` (AMI names allow no colons). */
export function imageStamp(at: Date): string {
  return at.toISOString().replace(/[-:]/g, "").replace(/\.\d+Z$/, "Z");
}

export function imageTags(app: string, env: string, version: string, sha256: string, name: string, stage: ImageStage = "released"): Record<string, string> {
  return { ...baseTags(app, env), [TAG_VERSION]: version, [TAG_SHA256]: sha256, Name: name, [TAG_IMAGE_STAGE]: stage };
}

export function buildCreateImageInput(req: BakeImageRequest, now: Date = new Date()): CreateImageCommandInput {
  const name = imageName(req.app, req.env, req.version, req.stamp ?? imageStamp(now));
  const tags = tagList(imageTags(req.app, req.env, req.version, req.sha256, name, req.stage));
  return {
    InstanceId: req.instanceId,
    Name: name,
    Description: `zcp ${req.app} ${req.env} ${req.version} (sha256 ${req.sha256.slice(0, 12)}) from ${req.instanceId}`.slice(0, 255),
    NoReboot: req.noReboot,
    TagSpecifications: [
      { ResourceType: "image", Tags: tags },
      ...(req.tagSnapshotsOnCreate === false ? [] : [{ ResourceType: "snapshot" as const, Tags: tags }]),
    ],
  };
}

/** Sends CreateImage. Prefer `findOrCreateImage`, which does not bake a version twice. */
export async function createImage(
  ec2: EC2Client,
  req: BakeImageRequest,
  pacing: Pacing = {},
): Promise<{ imageId: string; name: string }> {
  const input = buildCreateImageInput(req, new Date((pacing.now ?? Date.now)()));
  const out = await awsCall("Image bake from", req.instanceId, () => ec2.send(new CreateImageCommand(input)), pacing);
  if (!out.ImageId) throw new StepError("Image bake from", req.instanceId, new Error("CreateImage returned no ImageId"));
  return { imageId: out.ImageId, name: input.Name ?? "" };
}

export interface CreateImageHooks {
  /**
   * Runs just before CreateImage, only when a new image is made; if it throws, CreateImage is
   * not sent. The release runs prepare-image on the source instance here
   * (deploy/steps/image-preparation.ts).
   */
  beforeCreate?: () => Promise<void>;
}

/**
 * The image of this version: the existing one when a previous attempt already baked it (found
 * by its zcp:app/env/version tags), else a new one. Returns immediately; the image may still
 * be pending — follow with `waitForImageAvailable`.
 */
export async function findOrCreateImage(
  ec2: EC2Client,
  req: BakeImageRequest,
  pacing: Pacing = {},
  hooks: CreateImageHooks = {},
): Promise<{ imageId: string; name: string; reused: boolean }> {
  const existing = await findImageForVersion(ec2, req, pacing);
  if (existing) return { imageId: existing.imageId, name: existing.name, reused: true };
  await hooks.beforeCreate?.();
  try {
    return { ...(await createImage(ec2, req, pacing)), reused: false };
  } catch (err) {
    // Two runs racing on the same second produce the same name; the loser adopts the winner's image.
    if (awsErrorName(err) === "InvalidAMIName.Duplicate") {
      const raced = await findImageForVersion(ec2, req, pacing);
      if (raced) return { imageId: raced.imageId, name: raced.name, reused: true };
    }
    throw err;
  }
}

// ---------------------------------------------------------------- wait

export interface ImageWaitOptions {
  /** From config: how long a bake may take. Tens of minutes is normal for large volumes. */
  timeoutMinutes: number;
  /** First poll delay (ms). @default 5000 */
  pollInitialDelayMs?: number;
  /** Longest delay between polls (ms). @default 30000 */
  pollMaxDelayMs?: number;
  pacing?: Pacing;
}

/**
 * Polls until the image is available; progress lines read `AmiAvailable: attempt 3/20
 * ami-… state=pending (45s)`. The SDK's waiter would do the polling but cannot report
 * progress or run on an injected clock, so this uses the shared poll helper instead.
 */
export async function waitForImageAvailable(ec2: EC2Client, imageId: string, opts: ImageWaitOptions): Promise<ImageSummary> {
  const pacing = pacingOptions(opts.pacing ?? {});
  const deadlineMs = opts.timeoutMinutes * 60_000;
  const maxDelayMs = opts.pollMaxDelayMs ?? 30_000;
  let lastState = "unknown";
  try {
    return await poll<ImageSummary>(
      async () => {
        let image: ImageSummary | undefined;
        try {
          const out = await awsCall("Waiting for image", imageId, () => ec2.send(new DescribeImagesCommand({ ImageIds: [imageId] })), pacing);
          const found = out.Images?.[0];
          image = found ? imageSummary(found) : undefined;
        } catch (err) {
          // EC2 is eventually consistent: a just-created image can be unknown for a few seconds.
          // Throttling the SDK's retries did not absorb: no news this round; poll again.
          if (awsErrorName(err) !== "InvalidAMIID.NotFound" && !isThrottledOrTransient(err)) throw err;
        }
        lastState = image?.state ?? "not-visible-yet";
        if (image?.state === "available") return { done: true, value: image };
        if (image && BROKEN_STATES.has(image.state)) {
          throw new StepError(
            "Waiting for image",
            imageId,
            new Error(`the image entered state "${image.state}"${image.stateReason ? ` (${image.stateReason})` : ""} and will never become available`),
          );
        }
        return { done: false, status: `${imageId} state=${lastState}` };
      },
      {
        label: "AmiAvailable",
        deadlineMs,
        maxAttempts: Math.max(3, Math.ceil(deadlineMs / (maxDelayMs / 2))),
        initialDelayMs: opts.pollInitialDelayMs ?? 5_000,
        maxDelayMs,
        ...pacing,
      },
    );
  } catch (err) {
    if (err instanceof DeadlineExceededError) {
      throw new DeadlineExceededError(
        `image ${imageId} was not available within ${opts.timeoutMinutes} minutes (last state ${lastState}); ` +
          "raise the image timeout or check the instance's volumes",
        { cause: err },
      );
    }
    throw err;
  }
}

/** Tags an image's snapshots like the image (for images baked with `tagSnapshotsOnCreate: false`). */
export async function tagImageSnapshots(ec2: EC2Client, image: ImageSummary, req: BakeImageRequest, pacing: Pacing = {}): Promise<void> {
  if (image.snapshotIds.length === 0) return;
  const tags = tagList(imageTags(req.app, req.env, req.version, req.sha256, image.name, imageStage(image)));
  await awsCall(
    "Tagging the snapshots of image",
    image.imageId,
    () => ec2.send(new CreateTagsCommand({ Resources: [...image.snapshotIds], Tags: tags })),
    pacing,
  );
}

/**
 * The whole bake: reuse or create the version's image, wait until it is available, and make
 * sure its snapshots carry the zcp tags.
 */
export async function bakeImage(
  ec2: EC2Client,
  req: BakeImageRequest,
  wait: ImageWaitOptions,
  hooks: CreateImageHooks = {},
): Promise<{ image: ImageSummary; reused: boolean }> {
  const pacing = wait.pacing ?? {};
  const made = await findOrCreateImage(ec2, req, pacing, hooks);
  const image = await waitForImageAvailable(ec2, made.imageId, wait);
  if (req.tagSnapshotsOnCreate === false) await tagImageSnapshots(ec2, image, req, pacing);
  return { image, reused: made.reused };
}

// ---------------------------------------------------------------- candidate images

/** Moves an image to another stage by retagging it (CreateTags overwrites an existing key). */
export async function setImageStage(ec2: EC2Client, imageId: string, stage: ImageStage, pacing: Pacing = {}): Promise<void> {
  await awsCall(
    stage === "released" ? "Promoting image" : "Retiring image",
    imageId,
    () => ec2.send(new CreateTagsCommand({ Resources: [imageId], Tags: [{ Key: TAG_IMAGE_STAGE, Value: stage }] })),
    pacing,
  );
}

/**
 * A candidate whose release failed: it is tagged `retired` at once, so nothing adopts it, and
 * deregistered with its snapshots by the retention of the next release that finds it finished
 * (a pending image is never deregistered: CreateImage is still writing its snapshots).
 */
export async function retireImage(ec2: EC2Client, imageId: string, pacing: Pacing = {}): Promise<void> {
  await setImageStage(ec2, imageId, "retired", pacing);
}

// ---------------------------------------------------------------- retention

export interface RetentionRequest {
  app: string;
  env: string;
  /** How many of the newest zcp images of this app/env to keep. At least 1. */
  keep: number;
  /** Images used by any version of this template are never removed. */
  launchTemplateId?: string;
  /**
   * The image parameter new instances launch from: the image it names now and the images of
   * its newest `keep` versions (what a rollback moves it back to) are never removed.
   * @default none
   */
  imageParameter?: { ssm: SSMClient; name: string };
  /** Images the caller needs whatever their age (the one just baked). @default none */
  protectImageIds?: readonly string[];
  /** Plan only: decide, but deregister and delete nothing. @default false */
  dryRun?: boolean;
}

export interface KeptImage {
  imageId: string;
  name: string;
  version?: string;
  /** Why it stays, e.g. `one of the newest 3`, `launch template lt-… version 4`. */
  reasons: string[];
}

export interface RemovedImage {
  imageId: string;
  name: string;
  version?: string;
  reason: string;
  /** Snapshots deleted with it (planned ones, in a dry run). */
  snapshotIds: string[];
  /** Snapshots that had to stay, with why (another image still uses one). */
  snapshotsLeft?: { snapshotId: string; reason: string }[];
}

export interface RetentionResult {
  kept: KeptImage[];
  removed: RemovedImage[];
}

export interface RetentionReferences {
  /** imageId → image parameter versions (the newest `keep`) that name it. @default none */
  byImageParameter?: ReadonlyMap<string, readonly string[]>;
  /** imageId → template versions that use it. */
  byLaunchTemplate: ReadonlyMap<string, readonly string[]>;
  /** imageId → running or pending instances launched from it. */
  byInstances: ReadonlyMap<string, readonly string[]>;
  protect: ReadonlySet<string>;
}

/** Decides what stays and what goes. Pure: the executor gathers references, then applies this. */
export function planImageRetention(images: readonly ImageSummary[], keep: number, refs: RetentionReferences): RetentionResult {
  const sorted = [...images].sort(newestFirst);
  const kept: KeptImage[] = [];
  const removed: RemovedImage[] = [];
  // Only available, released images count towards "newest N": a pending bake, a candidate of a
  // release that has not finished and a retired candidate are not release images.
  let newestCounted = 0;
  for (const img of sorted) {
    const reasons: string[] = [];
    const stage = imageStage(img);
    if (img.state === "available" && stage === "released" && newestCounted < keep) {
      newestCounted++;
      reasons.push(`one of the newest ${keep}`);
    }
    if (img.state === "pending" || img.state === "transient") reasons.push(`not finished yet (state ${img.state})`);
    for (const v of refs.byImageParameter?.get(img.imageId) ?? []) reasons.push(`image parameter version ${v}`);
    for (const v of refs.byLaunchTemplate.get(img.imageId) ?? []) reasons.push(`launch template version ${v}`);
    const users = refs.byInstances.get(img.imageId) ?? [];
    if (users.length > 0) reasons.push(`used by instance${users.length > 1 ? "s" : ""} ${users.join(", ")}`);
    if (refs.protect.has(img.imageId)) reasons.push("protected by this release");
    const version = img.tags[TAG_VERSION];
    const named = { imageId: img.imageId, name: img.name, ...(version !== undefined ? { version } : {}) };
    if (reasons.length > 0) {
      kept.push({ ...named, reasons });
    } else {
      removed.push({
        ...named,
        reason: BROKEN_STATES.has(img.state)
          ? `state ${img.state}`
          : stage === "retired"
            ? "retired candidate of a failed release"
            : stage === "candidate"
              ? "candidate of a release that never finished"
              : `older than the newest ${keep} and referenced by nothing`,
        snapshotIds: [...img.snapshotIds],
      });
    }
  }
  return { kept, removed };
}

export function buildTemplateVersionsInput(launchTemplateId: string, nextToken?: string): DescribeLaunchTemplateVersionsCommandInput {
  return { LaunchTemplateId: launchTemplateId, MaxResults: 200, ...(nextToken ? { NextToken: nextToken } : {}) };
}

export function buildInstancesUsingImagesInput(imageIds: readonly string[], nextToken?: string): DescribeInstancesCommandInput {
  return {
    Filters: [
      { Name: "image-id", Values: [...imageIds] },
      { Name: "instance-state-name", Values: ["pending", "running"] },
    ],
    MaxResults: 1000,
    ...(nextToken ? { NextToken: nextToken } : {}),
  };
}

async function templateReferences(ec2: EC2Client, launchTemplateId: string, pacing: Pacing): Promise<Map<string, string[]>> {
  const refs = new Map<string, string[]>();
  let token: string | undefined;
  do {
    const input = buildTemplateVersionsInput(launchTemplateId, token);
    const page = await awsCall("Image retention: reading launch template", launchTemplateId, () => ec2.send(new DescribeLaunchTemplateVersionsCommand(input)), pacing);
    for (const v of page.LaunchTemplateVersions ?? []) {
      const imageId = v.LaunchTemplateData?.ImageId;
      if (!imageId) continue;
      const label = `${launchTemplateId}:${v.VersionNumber ?? "?"}${v.DefaultVersion ? " (default)" : ""}`;
      refs.set(imageId, [...(refs.get(imageId) ?? []), label]);
    }
    token = page.NextToken || undefined;
  } while (token);
  return refs;
}

/**
 * Images the image parameter names in its newest `keep` versions (the current one first): the
 * image new instances launch, and the earlier release images a rollback moves it back to.
 */
async function imageParameterReferences(ssm: SSMClient, name: string, keep: number, pacing: Pacing): Promise<Map<string, string[]>> {
  const refs = new Map<string, string[]>();
  const history = await imageParameterHistory(ssm, name, pacing);
  history.slice(0, keep).forEach((v, i) => {
    const label = `${name}:${v.version}${i === 0 ? " (current)" : ""}`;
    refs.set(v.imageId, [...(refs.get(v.imageId) ?? []), label]);
  });
  return refs;
}

/**
 * DeregisterImage deletes the image's snapshots in the same call only when asked to
 * (API reference, DeregisterImage, DeleteAssociatedSnapshots: "Specifies whether to delete the
 * snapshots associated with the AMI during deregistration"); without it they stay and keep
 * costing storage.
 */
export function buildDeregisterImageInput(imageId: string): DeregisterImageCommandInput {
  return { ImageId: imageId, DeleteAssociatedSnapshots: true };
}

/** EC2 accepts up to 200 values in one filter; 100 keeps well inside it. */
const IMAGE_FILTER_CHUNK = 100;

async function instanceReferences(ec2: EC2Client, imageIds: readonly string[], pacing: Pacing): Promise<Map<string, string[]>> {
  const refs = new Map<string, string[]>();
  for (let i = 0; i < imageIds.length; i += IMAGE_FILTER_CHUNK) {
    const chunk = imageIds.slice(i, i + IMAGE_FILTER_CHUNK);
    let token: string | undefined;
    do {
      const input = buildInstancesUsingImagesInput(chunk, token);
      const page = await awsCall("Image retention: finding instances of", `${chunk.length} images`, () => ec2.send(new DescribeInstancesCommand(input)), pacing);
      for (const r of page.Reservations ?? []) {
        for (const inst of r.Instances ?? []) {
          if (!inst.ImageId || !inst.InstanceId) continue;
          refs.set(inst.ImageId, [...(refs.get(inst.ImageId) ?? []), inst.InstanceId]);
        }
      }
      token = page.NextToken || undefined;
    } while (token);
  }
  return refs;
}

/**
 * Keeps the newest `keep` images of this app/env and every image still referenced (by the image
 * parameter, a launch-template version or a live instance); deregisters the rest together
 * with their snapshots. Returns what stayed and what went, each with why.
 *
 * Launch-template versions are read, never deleted: releases stopped making them when the
 * template's image moved to the image parameter, and the release role has no template write.
 * Versions an earlier zcp made still hold their images until an operator deletes them
 * (docs/operations.md, "Images and the launch template").
 */
export async function applyImageRetention(ec2: EC2Client, req: RetentionRequest, pacing: Pacing = {}): Promise<RetentionResult> {
  if (!Number.isInteger(req.keep) || req.keep < 1) {
    throw new ConfigError("keepImages", `must be a whole number of at least 1, got ${String(req.keep)}`);
  }
  const images = await listImages(ec2, { app: req.app, env: req.env }, pacing);
  const byLaunchTemplate = req.launchTemplateId ? await templateReferences(ec2, req.launchTemplateId, pacing) : new Map<string, string[]>();
  const byImageParameter = req.imageParameter
    ? await imageParameterReferences(req.imageParameter.ssm, req.imageParameter.name, req.keep, pacing)
    : new Map<string, string[]>();
  const byInstances = await instanceReferences(
    ec2,
    images.map((i) => i.imageId),
    pacing,
  );
  const plan = planImageRetention(images, req.keep, { byImageParameter, byLaunchTemplate, byInstances, protect: new Set(req.protectImageIds ?? []) });
  if (req.dryRun) return plan;

  const removed: RemovedImage[] = [];
  for (const img of plan.removed) removed.push(await deregisterWithSnapshots(ec2, img, pacing));
  return { kept: plan.kept, removed };
}

/**
 * One DeregisterImage that also deletes the image's snapshots, each reported in
 * DeleteSnapshotResults (API reference, DeregisterImage: `success`, or why a snapshot stayed,
 * e.g. another image still uses it). An endpoint that reports no result for a snapshot (the
 * local emulator does not implement the parameter) gets a DeleteSnapshot for it instead.
 */
async function deregisterWithSnapshots(ec2: EC2Client, img: RemovedImage, pacing: Pacing): Promise<RemovedImage> {
  const out = await awsCall("Image retention: deregistering", img.imageId, () => ec2.send(new DeregisterImageCommand(buildDeregisterImageInput(img.imageId))), pacing);
  const results = new Map((out.DeleteSnapshotResults ?? []).map((r) => [r.SnapshotId ?? "", r.ReturnCode ?? ""]));
  const deleted: string[] = [];
  const left: { snapshotId: string; reason: string }[] = [];
  for (const snapshotId of img.snapshotIds) {
    const code = results.get(snapshotId);
    if (code === "success") {
      deleted.push(snapshotId);
      continue;
    }
    if (code !== undefined) {
      left.push({ snapshotId, reason: code === "skipped" ? "still used by another image" : `not deleted (${code})` });
      continue;
    }
    try {
      await awsCall("Image retention: deleting snapshot", snapshotId, () => ec2.send(new DeleteSnapshotCommand({ SnapshotId: snapshotId })), pacing);
      deleted.push(snapshotId);
    } catch (err) {
      const name = awsErrorName(err);
      if (name === "InvalidSnapshot.NotFound") continue;
      // Another image (a copy made by hand) still uses it: the snapshot outlives this image.
      if (name === "InvalidSnapshot.InUse") {
        left.push({ snapshotId, reason: "still used by another image" });
        continue;
      }
      throw err;
    }
  }
  return { ...img, snapshotIds: deleted, ...(left.length > 0 ? { snapshotsLeft: left } : {}) };
}
