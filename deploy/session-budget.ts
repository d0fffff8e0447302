/**
 * A release must finish inside the role session that runs it: credentials that expire
 * mid-release leave a fleet half-switched, a candidate image unpromoted, or latest.json behind
 * the launch template. Before anything changes, the runner adds up the longest the planned
 * release may take (every wait it may sit out to its bound) and refuses it (exit 2) when that
 * does not fit in what is left of the session.
 *
 * The session's end is the `expiration` of the credentials the SDK's default provider chain
 * resolves (in CI, the OIDC web-identity session). Credentials without one (the local
 * environment's emulator) are not checked, and the runner says so.
 */
import { ConfigError } from "../shared/errors.js";
import { createAwsClients, destroyAwsClients, type AwsClients } from "./aws/clients.js";
import { discoverFleet } from "./aws/fleet.js";
import type { EnvironmentContext } from "./environments.js";
import type { ReleasePlan } from "./program.js";
import { planBatches } from "./steps/rollout.js";
import type { TrafficSpec } from "./traffic/controller.js";

/** How long past the command timeouts the ssm transport keeps polling (its deadline grace). */
export const STATUS_POLLING_S = 120;
/**
 * A target group's deregistration delay when zcp has not read it: the documented default
 * (Elastic Load Balancing, target group attributes, `deregistration_delay.timeout_seconds`).
 */
export const DEFAULT_DEREGISTRATION_DELAY_S = 300;
/** How long a batch waits for enough healthy instances before it may leave traffic (rollout.ts). */
export const HEALTHY_MINIMUM_WAIT_S = 300;
/** How long the catch-up waits out a newcomer's boot converge (6 × 30 s, deploy/steps/catch-up.ts). */
export const BOOT_CONVERGE_WAIT_S = 6 * 30;
/** Time no bound covers: the engine starting its steps, artifact checks, API calls. */
export const ENGINE_OVERHEAD_S = 120;

export interface WorstCasePart {
  what: string;
  seconds: number;
}

export interface ReleaseWorstCase {
  seconds: number;
  batches: number;
  parts: WorstCasePart[];
}

/** Longest one batch may stay out of the load balancer: the drain, then back in and healthy. */
export function trafficWorstCaseS(spec: TrafficSpec, minHealthyPercent: number): number {
  const waitForOthers = minHealthyPercent > 0 ? HEALTHY_MINIMUM_WAIT_S : 0;
  switch (spec.kind) {
    case "none":
      return 0;
    case "haproxy":
      return waitForOthers + spec.drainTimeoutS + spec.healthyTimeoutS;
    case "target-group":
      // Deregistered within the delay (+30 s), then registered and healthy (target-group.ts).
      return waitForOthers + DEFAULT_DEREGISTRATION_DELAY_S + 30 + spec.healthyTimeoutS;
    case "asg-standby":
      // Standby within the delay (+60 s), targets deregistered (+30 s); back: InService, then
      // healthy in the target groups, each up to healthyTimeoutS (asg-standby.ts).
      return waitForOthers + 2 * DEFAULT_DEREGISTRATION_DELAY_S + 60 + 30 + 2 * spec.healthyTimeoutS;
  }
}

/**
 * The longest a release of `plan` to `fleetSize` instances may take when it succeeds: every
 * batch waits out SSM's delivery timeout, then the execution timeout, then the status polling;
 * each batch's traffic drain and return take their bounds; the canary soaks; the instances
 * that joined meanwhile get one more batch before the template moves and one before the pointer
 * moves; the image takes its whole wait.
 */
export function releaseWorstCase(plan: Pick<ReleasePlan, "fleet" | "image">, fleetSize: number): ReleaseWorstCase {
  const f = plan.fleet;
  const ids = Array.from({ length: fleetSize }, (_, i) => `i-${i}`);
  const batches = planBatches(ids, f.canary, f.batch, f.minHealthyPercent).length;
  const deliveryS = f.deliveryTimeoutS ?? f.commandTimeoutS;
  const trafficS = trafficWorstCaseS(f.traffic, f.minHealthyPercent);
  const batchS = deliveryS + f.commandTimeoutS + STATUS_POLLING_S + trafficS;
  const batchWhat =
    `delivery ${deliveryS}s + execution ${f.commandTimeoutS}s + polling ${STATUS_POLLING_S}s` + (trafficS > 0 ? ` + traffic ${trafficS}s` : "");
  const catchUps = plan.image.enabled ? 2 : 1;
  const parts: WorstCasePart[] = [
    { what: `${batches} batch(es) × (${batchWhat})`, seconds: batches * batchS },
    ...(f.canary > 0 && batches > 1 && f.soakSeconds > 0 ? [{ what: "canary soak", seconds: f.soakSeconds }] : []),
    {
      what: `${catchUps} catch-up batch(es) for instances launched meanwhile (each + ${BOOT_CONVERGE_WAIT_S}s for a boot converge)`,
      seconds: catchUps * (batchS + BOOT_CONVERGE_WAIT_S),
    },
    ...(plan.image.enabled ? [{ what: "image wait", seconds: plan.image.waitTimeoutMinutes * 60 }] : []),
    { what: "engine and API calls", seconds: ENGINE_OVERHEAD_S },
  ];
  return { seconds: parts.reduce((sum, p) => sum + p.seconds, 0), batches, parts };
}

export interface SessionCheck {
  /** The resolved credentials' expiry; undefined when they carry none. */
  expiration: Date | undefined;
  now: number;
  worstCase: ReleaseWorstCase;
  log: (message: string) => void;
}

/** Throws ConfigError (exit 2) when the release may outlast the session; logs what it checked. */
export function checkSessionBudget(c: SessionCheck): void {
  const worst = c.worstCase;
  if (!c.expiration) {
    c.log("role session: the credentials carry no expiry (AWS_CREDENTIAL_EXPIRATION unset, or an emulator's); not checking that the release fits in the session");
    return;
  }
  const leftS = Math.floor((c.expiration.getTime() - c.now) / 1000);
  const breakdown = worst.parts.map((p) => `${p.what} ${p.seconds}s`).join(" + ");
  if (worst.seconds <= leftS) {
    c.log(`role session: ${leftS}s left, this release may take up to ${worst.seconds}s`);
    return;
  }
  throw new ConfigError(
    "zcp:github.sessionDurationS",
    `the role session ends in ${Math.max(0, leftS)}s (at ${c.expiration.toISOString()}) but this release may take up to ${worst.seconds}s ` +
      `(${breakdown}); nothing was changed. Start it with a longer session (raise zcp:github.sessionDurationS, up to 43200, and run pulumi up), ` +
      `or lower zcp:deploy.commandTimeoutS, zcp:deploy.deliveryTimeoutS or zcp:image.waitTimeoutMinutes, or use larger batches or --skip-image`,
  );
}

/** The expiry of resolved credentials (AwsCredentialIdentity.expiration), when they name a valid one. */
export function expiryOf(identity: { expiration?: Date | undefined }): Date | undefined {
  const e = identity.expiration;
  return e instanceof Date && !Number.isNaN(e.getTime()) ? e : undefined;
}

export interface SessionDeps {
  /** Resolves the credentials the release will use. @default the SDK default chain, as the runner's clients resolve it */
  credentials?: () => Promise<{ accessKeyId?: string; expiration?: Date | undefined }>;
  /** In-service instances the release would go to. @default fleet discovery, as FleetDeployment does it */
  fleetSize?: () => Promise<number>;
  now?: () => number;
}

/**
 * The runner's check, before anything changes: the credentials' expiry, then (only when there
 * is one) the fleet's size, then the sum. Throws ConfigError (exit 2) when it does not fit.
 */
export async function checkReleaseSession(
  plan: Pick<ReleasePlan, "fleet" | "image">,
  ctx: Pick<EnvironmentContext, "name" | "outputs">,
  log: (message: string) => void,
  deps: SessionDeps = {},
): Promise<void> {
  const clients = deps.credentials && deps.fleetSize ? undefined : createAwsClients({ region: ctx.outputs.region });
  try {
    const resolve = deps.credentials ?? (() => (clients as AwsClients).sts.config.credentials());
    const expiration = expiryOf(await resolve());
    const count =
      deps.fleetSize ??
      (async () =>
        (
          await discoverFleet(clients as AwsClients, {
            app: ctx.outputs.app,
            env: ctx.name,
            ...(ctx.outputs.autoScalingGroupName ? { autoScalingGroupName: ctx.outputs.autoScalingGroupName } : {}),
          })
        ).length);
    const fleetSize = expiration ? await count() : 0;
    checkSessionBudget({ expiration, now: (deps.now ?? Date.now)(), worstCase: releaseWorstCase(plan, fleetSize), log });
  } finally {
    if (clients) destroyAwsClients(clients);
  }
}
