/**
 * The image parameter: the SSM parameter (`/zcp/<app>/<env>/image-id`, data type
 * `aws:ec2:image`) the launch template's image resolves from (`resolve:ssm:`). A release moves
 * the fleet's image by writing this one parameter; it never writes the launch template, so it
 * cannot choose the instance profile, user data or metadata options of later instances.
 */
import {
  GetParameterCommand,
  GetParameterHistoryCommand,
  PutParameterCommand,
  type GetParameterHistoryCommandInput,
  type PutParameterCommandInput,
  type SSMClient,
} from "@aws-sdk/client-ssm";
import { DeadlineExceededError, StepError } from "../../shared/errors.js";
import { poll } from "../../shared/retry.js";
import { awsCall, awsErrorName, pacingOptions, type Pacing } from "./call.js";

export interface ImageParameterValue {
  name: string;
  /** Parameter Store's version number: 1 for the foundation's first value, +1 per write. */
  version: number;
  imageId: string;
}

/** What PutParameter writes: only the value changes; type and data type stay as the foundation made them. */
export function buildPutImageParameterInput(name: string, imageId: string): PutParameterCommandInput {
  return { Name: name, Value: imageId, Type: "String", DataType: "aws:ec2:image", Overwrite: true };
}

/** The parameter's current value and version; undefined when it does not exist. */
export async function readImageParameter(ssm: SSMClient, name: string, pacing: Pacing = {}): Promise<ImageParameterValue | undefined> {
  try {
    const out = await awsCall("Reading image parameter", name, () => ssm.send(new GetParameterCommand({ Name: name })), pacing);
    const p = out.Parameter;
    if (!p?.Value || p.Version === undefined) return undefined;
    return { name, version: p.Version, imageId: p.Value };
  } catch (err) {
    if (awsErrorName(err) === "ParameterNotFound") return undefined;
    throw err;
  }
}

export function buildParameterHistoryInput(name: string, nextToken?: string): GetParameterHistoryCommandInput {
  // 50 is GetParameterHistory's largest page (API reference, GetParameterHistory, MaxResults).
  return { Name: name, MaxResults: 50, ...(nextToken ? { NextToken: nextToken } : {}) };
}

/**
 * Every version Parameter Store still holds of the parameter (it keeps the newest 100:
 * Systems Manager user guide, "Working with parameter versions"), newest first.
 */
export async function imageParameterHistory(ssm: SSMClient, name: string, pacing: Pacing = {}): Promise<ImageParameterValue[]> {
  const out: ImageParameterValue[] = [];
  let token: string | undefined;
  try {
    do {
      const input = buildParameterHistoryInput(name, token);
      const page = await awsCall("Reading the history of image parameter", name, () => ssm.send(new GetParameterHistoryCommand(input)), pacing);
      for (const p of page.Parameters ?? []) {
        if (p.Value && p.Version !== undefined) out.push({ name, version: p.Version, imageId: p.Value });
      }
      token = page.NextToken || undefined;
    } while (token);
  } catch (err) {
    if (awsErrorName(err) === "ParameterNotFound") return [];
    throw err;
  }
  return out.sort((a, b) => b.version - a.version);
}

export interface ImageParameterMove {
  name: string;
  imageId: string;
  /** The parameter version that names `imageId` after the call. */
  version: number;
  /** The image the parameter named before the call ("" when it did not exist). */
  previousImageId: string;
  /** `unchanged` when the parameter already named the image (a retried step, a re-run). */
  action: "unchanged" | "moved";
}

export interface MoveOptions {
  /** How long SSM's asynchronous validation of an `aws:ec2:image` value may take. @default 60000 */
  validationTimeoutMs?: number;
}

/**
 * Points the parameter at `imageId`. Idempotent: when it already names the image nothing is
 * written. After the write, reads the parameter back until it names the image: for data type
 * `aws:ec2:image` an HTTP 200 from PutParameter does not mean the value was stored; SSM
 * validates it asynchronously and drops a value that is not an available AMI of the account
 * (API reference, PutParameter, DataType).
 */
export async function moveImageParameter(
  ssm: SSMClient,
  req: { name: string; imageId: string },
  pacing: Pacing = {},
  opts: MoveOptions = {},
): Promise<ImageParameterMove> {
  const current = await readImageParameter(ssm, req.name, pacing);
  if (!current) {
    throw new StepError("Moving image parameter", req.name, new Error("it does not exist; run the foundation's `pulumi up` first"));
  }
  if (current.imageId === req.imageId) {
    return { name: req.name, imageId: req.imageId, version: current.version, previousImageId: current.imageId, action: "unchanged" };
  }
  const input = buildPutImageParameterInput(req.name, req.imageId);
  const put = await awsCall("Moving image parameter", req.name, () => ssm.send(new PutParameterCommand(input)), pacing);
  const written = put.Version ?? current.version + 1;
  const p = pacingOptions(pacing);
  let seen = current;
  try {
    await poll<ImageParameterValue>(
      async () => {
        const now = await readImageParameter(ssm, req.name, pacing);
        if (now) seen = now;
        if (now && now.version >= written) return { done: true, value: now };
        return { done: false, status: `${req.name} still at version ${seen.version} (${seen.imageId})` };
      },
      { label: "ImageParameterStored", deadlineMs: opts.validationTimeoutMs ?? 60_000, initialDelayMs: 1_000, maxDelayMs: 5_000, ...p },
    );
  } catch (err) {
    if (err instanceof DeadlineExceededError) {
      throw new StepError(
        "Moving image parameter",
        req.name,
        new Error(`SSM did not store ${req.imageId} as version ${written} (it still names ${seen.imageId}); is the image available in this account and region?`),
      );
    }
    throw err;
  }
  if (seen.imageId !== req.imageId) {
    // Another writer moved it right after this one: report, never overwrite theirs.
    throw new StepError("Moving image parameter", req.name, new Error(`it names ${seen.imageId} (version ${seen.version}) instead of ${req.imageId}: another writer moved it`));
  }
  return { name: req.name, imageId: req.imageId, version: seen.version, previousImageId: current.imageId, action: "moved" };
}
