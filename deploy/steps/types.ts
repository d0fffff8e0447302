/**
 * Typed inputs and outputs of the release stack's steps. Providers pass these through the
 * engine unchanged; nothing here is secret (credentials come from the environment of the
 * engine's provider host, never from inputs or outputs).
 */
import type { AgentParams, AgentRuntime } from "../transport.js";
import type { TrafficSpec } from "../traffic/controller.js";

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
  candidateImage?: { noReboot: boolean; tagSnapshotsOnCreate: boolean };
  /** How batches leave and rejoin the load balancer. */
  traffic: TrafficSpec;
  /** Share of the fleet kept healthy in service while a batch is out of traffic (0..100). */
  minHealthyPercent: number;
  /** CloudWatch alarms checked during the canary soak and after each batch. */
  alarmNames: string[];
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
  launchTemplateId: string;
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

export interface LaunchTemplateReleaseInputs {
  region: string;
  app: string;
  bucket: string;
  /**
   * ETag of latest.json when the release started ("" when absent). The template is only
   * moved while the pointer is still that one: a concurrent writer stops the release before
   * new instances would boot an image `latest` does not name.
   */
  expectedLatestEtag: string;
  launchTemplateId: string;
  imageId: string;
  version: string;
}
export interface LaunchTemplateReleaseOutputs extends LaunchTemplateReleaseInputs {
  defaultVersion: number;
  previousDefaultVersion: number;
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
}
export interface LatestPointerOutputs extends LatestPointerInputs {
  etag: string;
  releasedAt: string;
  previousVersion: string | null;
}
