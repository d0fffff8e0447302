/**
 * Typed inputs and outputs of the release stack's steps. Providers pass these through the
 * engine unchanged; nothing here is secret (credentials come from the environment of the
 * engine's provider host, never from inputs or outputs).
 */
import type { AgentParams, AgentRuntime } from "../transport.js";
import type { TrafficSpec } from "../traffic/controller.js";
import type { ImageBakeStart } from "../../shared/config.js";

/** How the FleetDeployment reaches instances. */
export type TransportSpec =
  | { kind: "ssm"; documentName: string }
  | {
      kind: "local";
      /** Folder holding one sub-folder per local instance. */
      fleetRoot: string;
    };

export interface ArtifactInputs {
  region: string;
  bucket: string;
  key: string;
  version: string;
  sha256: string;
}
export interface ArtifactOutputs extends ArtifactInputs {
  uri: string;
  bytes: number;
}

export interface FleetDeploymentInputs {
  app: string;
  environment: string;
  region: string;
  version: string;
  sha256: string;
  bucket: string;
  artifactKey: string;
  runtime: AgentRuntime;
  canary: number;
  batch: string;
  soakSeconds: number;
  /** Failed instances tolerated per batch before the release stops. */
  maxErrors: number;
  /** Execution timeout of one instance's run (the deploy document's executionTimeout). */
  commandTimeoutS: number;
  /** SendCommand's delivery timeout. @default commandTimeoutS */
  deliveryTimeoutS?: number;
  autoScalingGroupName?: string;
  transport: TransportSpec;
  /**
   * Bake the release image from the canary once it has passed its soak, while the remaining
   * batches roll (see candidate-image.ts). Absent: BakedImage bakes after the rollout.
   */
  /**
   * Bake the release image from the canary while the rest rolls; `start` is when: `canary` as
   * soon as it is healthy (alongside its soak), `soak` once it has soaked.
   */
  candidateImage?: { noReboot: boolean; tagSnapshotsOnCreate: boolean; start: ImageBakeStart };
  /** How batches leave and rejoin the load balancer. */
  traffic: TrafficSpec;
  /** Share of the fleet kept healthy in service while a batch is out of traffic (0..100). */
  minHealthyPercent: number;
  /** CloudWatch alarms checked during the canary soak and after each batch. */
  alarmNames: string[];
}

/**
 * What the steps after FleetDeployment need to give instances that joined the fleet during
 * the release the release too (deploy/steps/catch-up.ts): the deployment's own settings and
 * the instances it deployed to.
 */
export interface CatchUpSpec extends Omit<FleetDeploymentInputs, "candidateImage"> {
  /** FleetDeployment's instance reports: the instances it deployed to. */
  deployedInstances: Pick<InstanceReport, "instanceId">[];
}

export interface InstanceReport {
  instanceId: string;
  batch: number;
  status: string;
  previous: string | null;
  /** Checksum of the previous release as verified on the instance (for rolling back to it). */
  previousSha256?: string;
  /**
   * The release `current` pointed to when the agent printed its result line; absent when
   * there was no result line (a kill, a lost status), so nothing is known about the instance.
   */
  current?: string | null;
  durationMs: number;
  message: string;
}

export interface FleetDeploymentOutputs {
  version: string;
  sha256: string;
  instances: InstanceReport[];
  batches: number;
  /** A healthy instance on the new version, to bake the image from. */
  imageSourceInstanceId: string;
  durationMs: number;
  /** Per batch: the slowest instance's agent time (for the overhead benchmark). */
  batchAgentMs: number[];
  /** The candidate image baking since the canary passed; "" when none was started. */
  candidateImageId: string;
  /** Per batch: how long taking it out of traffic took (for the zero-downtime benchmark). */
  batchDrainMs: number[];
}

export interface BakedImageInputs {
  app: string;
  environment: string;
  region: string;
  version: string;
  sha256: string;
  sourceInstanceId: string;
  /** The image FleetDeployment started from the canary; "" to bake from `sourceInstanceId`. */
  candidateImageId: string;
  /**
   * How to run prepare-image on `sourceInstanceId` before a new image is taken from it
   * (image-preparation.ts); the release program always sets it. @default no preparation
   */
  preparation?: { transport: TransportSpec; params: AgentParams; timeoutS: number; deliveryTimeoutS?: number };
  noReboot: boolean;
  retain: number;
  waitTimeoutMinutes: number;
  /** Images any version of this template names are never removed. */
  launchTemplateId: string;
  /** Images the image parameter names, now or in its kept history, are never removed. */
  imageParameterName: string;
  /**
   * Tag snapshots in CreateImage itself (AWS) or afterwards with CreateTags (the emulator
   * rejects snapshot tag specifications).
   */
  tagSnapshotsOnCreate: boolean;
}
export interface BakedImageOutputs extends BakedImageInputs {
  imageId: string;
  imageName: string;
  reused: boolean;
  removedImages: string[];
}

/**
 * The LaunchTemplateRelease step: the image new instances launch moves to the release image,
 * by writing the image parameter the launch template resolves its image from. The template
 * itself is never written.
 */
export interface LaunchTemplateReleaseInputs {
  region: string;
  app: string;
  bucket: string;
  /**
   * ETag of latest.json when the release started ("" when absent). The image is only moved
   * while the pointer is still that one: a concurrent writer stops the release before new
   * instances would boot an image `latest` does not name.
   */
  expectedLatestEtag: string;
  /** The SSM parameter (`/zcp/<app>/<env>/image-id`) the template's `resolve:ssm:` names. */
  imageParameterName: string;
  imageId: string;
  version: string;
  /** Newcomers to the fleet get the release before the template moves. @default none */
  catchUp?: CatchUpSpec;
}
export interface LaunchTemplateReleaseOutputs extends LaunchTemplateReleaseInputs {
  /** The parameter version that names the release image. */
  parameterVersion: number;
  /** The image new instances launched before this release. */
  previousImageId: string;
}

export interface LatestPointerInputs {
  region: string;
  bucket: string;
  app: string;
  version: string;
  key: string;
  sha256: string;
  imageId: string;
  launchTemplateVersion: number;
  /** ETag of latest.json when the release started; "" when there was none. */
  expectedEtag: string;
  /** Newcomers to the fleet get the release before the pointer moves. @default none */
  catchUp?: CatchUpSpec;
}
export interface LatestPointerOutputs extends LatestPointerInputs {
  etag: string;
  releasedAt: string;
  previousVersion: string | null;
}
