/**
 * Traffic control: how a release takes a batch out of the load balancer before its deploy
 * and puts it back after. The rollout (deploy/steps/rollout.ts) only talks to this
 * interface; one implementation per kind of load balancer:
 *
 *   none          no load balancer: instances restart while they receive traffic
 *   haproxy       the local environment's HAProxy, through its runtime API (haproxy.ts)
 *   target-group  ELBv2 DeregisterTargets / RegisterTargets (target-group.ts)
 *   asg-standby   Auto Scaling EnterStandby / ExitStandby (asg-standby.ts)
 */

export interface TrafficController {
  readonly kind: TrafficSpec["kind"];
  /** How many of `instanceIds` receive traffic and pass the load balancer's health check now. */
  healthyCount(instanceIds: readonly string[]): Promise<number>;
  /**
   * Stops new traffic to the instances and returns once their in-flight requests finished
   * (or the deregistration delay passed), so a restart drops nothing.
   */
  drain(instanceIds: readonly string[]): Promise<void>;
  /** Puts the instances back and returns once the load balancer reports them healthy. */
  restore(instanceIds: readonly string[]): Promise<void>;
}

/** What the FleetDeployment step is told about the environment's load balancer (plain data, no secret). */
export type TrafficSpec =
  | { kind: "none" }
  | {
      kind: "haproxy";
      /** The runtime API's unix socket (`stats socket … level admin`). */
      socketPath: string;
      backend: string;
      /** Seconds in-flight requests get to finish once a server is draining. */
      drainTimeoutS: number;
      /** Seconds a restored server gets to pass HAProxy's health check. */
      healthyTimeoutS: number;
    }
  | {
      kind: "target-group";
      targetGroupArns: string[];
      /** Seconds a registered target gets to become healthy. */
      healthyTimeoutS: number;
      /** Seconds between target-health polls (the SDK waiters' minimum delay). */
      pollSeconds: number;
    }
  | {
      kind: "asg-standby";
      autoScalingGroupName: string;
      /** Seconds a registered target gets to become healthy. */
      healthyTimeoutS: number;
      pollSeconds: number;
    };

/** The traffic part of a release's settings. */
export interface TrafficSettings {
  spec: TrafficSpec;
  /**
   * Share of the fleet that must stay in service and healthy while a batch is out of
   * traffic (0..100). As with instance refresh's MinHealthyPercentage, a batch is never
   * smaller than one instance, so 100 means one at a time.
   */
  minHealthyPercent: number;
}

/** The controller for no load balancer: nothing to take out of traffic. */
export const noTraffic: TrafficController = {
  kind: "none",
  healthyCount: async (ids) => ids.length,
  drain: async () => undefined,
  restore: async () => undefined,
};
