/**
 * The contract between the foundation stack and the release runner: the foundation exports
 * exactly these outputs; the runner reads them (StackReference or the automation API), or,
 * on the local environment, gets them from the seeded emulator.
 */
export interface FoundationOutputs {
  app: string;
  environment: string;
  accountId: string;
  region: string;
  /** Artifact bucket name. */
  bucket: string;
  /** Key prefix of this app's artifacts, `releases/<app>`. */
  artifactPrefix: string;
  /** Name of the SSM Command document that runs the deploy agent. */
  documentName: string;
  /** Launch template id (lt-…). */
  launchTemplateId: string;
  /**
   * The SSM parameter the launch template's image resolves from (`/zcp/<app>/<env>/image-id`);
   * a release moves the fleet's image by writing it.
   */
  imageParameterName: string;
  /** ASG name, when the foundation created or adopted one. */
  autoScalingGroupName?: string;
  /** Tag filters that select this app's instances in this environment. */
  fleetTags: Record<string, string>;
  releaseRoleArn: string;
  previewRoleArn: string;
  instanceRoleArn: string;
  instanceProfileName: string;
}

export const FOUNDATION_OUTPUT_KEYS = [
  "app",
  "environment",
  "accountId",
  "region",
  "bucket",
  "artifactPrefix",
  "documentName",
  "launchTemplateId",
  "imageParameterName",
  "fleetTags",
  "releaseRoleArn",
  "previewRoleArn",
  "instanceRoleArn",
  "instanceProfileName",
] as const satisfies readonly (keyof FoundationOutputs)[];
