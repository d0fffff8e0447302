/**
 * The deploy agent's inputs, shared by everything that starts it: the release runner (SSM and
 * local transports) and the foundation's boot-time converge script. They reach the agent as
 * the `ZCP_*` environment variables (see shared/agent/zcp-agent.sh).
 */

/** What the agent needs for one deploy. */
export interface AgentParams {
  app: string;
  version: string;
  /** `s3://bucket/key` or an absolute file path. */
  artifact: string;
  sha256: string;
  appDir: string;
  appUser: string;
  service: string;
  processManager: "supervisor" | "systemd";
  healthUrl: string;
  healthTimeoutS: number;
  keepReleases: number;
  /**
   * What the agent does with them: deploy the version, or (`prepare-image`) check that the
   * current release is still exactly what was deployed and clear the instance's identity
   * before an image is taken from it. @default "deploy"
   */
  action?: "deploy" | "prepare-image";
}

/** The per-fleet part of AgentParams: how the app runs on an instance, the same every release. */
export type AgentRuntime = Omit<AgentParams, "app" | "version" | "artifact" | "sha256" | "action">;
