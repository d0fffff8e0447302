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
   * The release's place in the app's release order (latest.json's `sequence`). The agent
   * records it with the version once healthy, so an instance (and an image baked from it)
   * knows how new its release is and boot converge never moves it to an older pointer.
   * @default none: the agent forgets any sequence it had recorded
   */
  sequence?: number;
  /**
   * What the agent does with them: deploy the version, or (`prepare-image`) check that the
   * current release is still exactly what was deployed and clear the instance's identity
   * before an image is taken from it. @default "deploy"
   */
  action?: "deploy" | "prepare-image";
}

/** The per-fleet part of AgentParams: how the app runs on an instance, the same every release. */
export type AgentRuntime = Omit<AgentParams, "app" | "version" | "artifact" | "sha256" | "sequence" | "action">;
