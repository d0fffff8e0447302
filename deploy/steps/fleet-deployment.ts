/** FleetDeployment step: discover the in-service instances, then roll the release out. */
import { ReleaseFailedError } from "../../shared/errors.js";
import { artifactKey } from "../../shared/naming.js";
import { headArtifact, s3Uri } from "../aws/artifacts.js";
import type { SSMClient } from "@aws-sdk/client-ssm";
import { createSendCommandClient, type AwsClients } from "../aws/clients.js";
import { discoverFleet } from "../aws/fleet.js";
import { nextSequence, readLatestPointer } from "../aws/latest-pointer.js";
import { emitProgress } from "../progress.js";
import type { AgentParams, Transport } from "../transport.js";
import { createSsmTransport } from "../transports/ssm.js";
import { createLocalTransport } from "../transports/local.js";
import { realSleep } from "../../shared/retry.js";
import { rollout } from "./rollout.js";
import { CandidateImage } from "./candidate-image.js";
import { prepareInstanceForImage } from "./image-preparation.js";
import { alarmGateFor, trafficControllerFor } from "../traffic/select.js";
import { stepLog, stepPacing, traced, withStepClients, type StepEnv } from "./context.js";
import type { FleetDeploymentInputs, FleetDeploymentOutputs, TransportSpec } from "./types.js";
import { mark, timed } from "../timings.js";
import type { TrafficController } from "../traffic/controller.js";

const STEP = "FleetDeployment";

export function transportFor(spec: TransportSpec, clients: AwsClients, sendCommandClient: SSMClient): Transport {
  if (spec.kind === "local") return createLocalTransport({ fleetRoot: spec.fleetRoot });
  return createSsmTransport({
    ssm: clients.ssm,
    sendCommandClient,
    documentName: spec.documentName,
    pacing: stepPacing(STEP),
  });
}

/** What deploying this release to some of the fleet needs: FleetDeployment's and the catch-up's. */
export type FleetReleaseSpec = Omit<FleetDeploymentInputs, "candidateImage">;

export interface FleetRun {
  transport: Transport;
  /** Agent parameters for a version (the release, or a release to roll back to). */
  paramsFor(version: string, knownSha256?: string): Promise<AgentParams>;
  /** The release latest.json named when the step started: the fleet's previous release. */
  previousRelease?: string;
  close(): void;
}

/**
 * The transport and parameters of this release. latest.json, read once, gives the fleet's
 * previous release (an instance whose own previous release is unknown is rolled back to it)
 * and the sequences: the release's own (the pointer's plus one, what LatestPointer will write:
 * the pointer cannot move meanwhile without failing that step's compare-and-swap) and the
 * previous release's, so a rolled-back instance records the release it runs again.
 */
export async function prepareFleetRun(spec: FleetReleaseSpec, clients: AwsClients, env: StepEnv, step: string): Promise<FleetRun> {
  const latest = await readLatestPointer(clients.s3, spec.bucket, spec.app, stepPacing(step));
  const previous = latest?.pointer;
  // SendCommand goes through a client without SDK retries: a retry after a lost response
  // would start a second command; the transport looks for the first one instead.
  let sendCommandClient: SSMClient | undefined;
  const transport = env.transport ?? transportFor(spec.transport, clients, (sendCommandClient = createSendCommandClient({ region: spec.region })));
  const sequenceOf = (version: string): number | undefined =>
    version === spec.version ? nextSequence(previous) : version === previous?.version ? previous.sequence : undefined;
  const paramsFor = async (version: string, knownSha256?: string): Promise<AgentParams> => {
    const key = version === spec.version ? spec.artifactKey : artifactKey(spec.app, version);
    let sha256 = spec.sha256;
    if (version !== spec.version) {
      const head = await headArtifact(clients.s3, spec.bucket, key, stepPacing(step)).catch((err: unknown) => {
        if (knownSha256) return undefined; // the instances still hold the release itself
        throw err;
      });
      const found = head?.sha256 ?? knownSha256;
      if (!found) throw new ReleaseFailedError(`cannot roll back to ${version}: ${s3Uri(spec.bucket, key)} is missing`);
      sha256 = found;
    }
    const sequence = sequenceOf(version);
    return { ...spec.runtime, app: spec.app, version, artifact: s3Uri(spec.bucket, key), sha256, ...(sequence !== undefined ? { sequence } : {}) };
  };
  return {
    transport,
    paramsFor,
    ...(previous ? { previousRelease: previous.version } : {}),
    close: () => sendCommandClient?.destroy(),
  };
}

/** The transport with a timing mark around each batch's agents (deploy/timings.ts). */
function timedTransport(transport: Transport): Transport {
  return {
    kind: transport.kind,
    runAgent: (ids, params, opts) => timed(`fleet: agents ${params.action ?? "deploy"} ×${ids.length}`, () => transport.runAgent(ids, params, opts)),
  };
}

/** The traffic controller with timing marks around each drain and restore. */
function timedTraffic(traffic: TrafficController): TrafficController {
  return {
    kind: traffic.kind,
    healthyCount: (ids) => traffic.healthyCount(ids),
    drain: (ids) => timed(`fleet: traffic drain ×${ids.length}`, () => traffic.drain(ids)),
    restore: (ids) => timed(`fleet: traffic restore ×${ids.length}`, () => traffic.restore(ids)),
  };
}

export async function deployFleet(inputs: FleetDeploymentInputs, env: StepEnv = {}): Promise<FleetDeploymentOutputs> {
  const now = env.now ?? Date.now;
  const sleep = env.sleep ?? realSleep;
  return traced(STEP, inputs.version, () =>
    withStepClients(inputs.region, env, async (clients) => {
      const started = now();
      const fleet = await discoverFleet(
        clients,
        {
          app: inputs.app,
          env: inputs.environment,
          ...(inputs.autoScalingGroupName ? { autoScalingGroupName: inputs.autoScalingGroupName } : {}),
        },
        { ...stepPacing(STEP), sleep, now },
      );
      mark("fleet: discovered");
      const run = await prepareFleetRun(inputs, clients, env, STEP);
      mark("fleet: transport and parameters ready");
      const transport = timedTransport(run.transport);
      const candidate = inputs.candidateImage
        ? new CandidateImage(
            clients.ec2,
            { app: inputs.app, env: inputs.environment, version: inputs.version, sha256: inputs.sha256, ...inputs.candidateImage },
            stepLog(STEP),
            { ...stepPacing(STEP), sleep, now },
            async (instanceId) =>
              prepareInstanceForImage(
                transport,
                instanceId,
                {
                  params: await run.paramsFor(inputs.version),
                  timeoutS: inputs.commandTimeoutS,
                  ...(inputs.deliveryTimeoutS !== undefined ? { deliveryTimeoutS: inputs.deliveryTimeoutS } : {}),
                },
                stepLog(STEP),
              ),
          )
        : undefined;
      const result = await rollout(
        fleet.map((i) => i.instanceId),
        inputs.version,
        {
          canary: inputs.canary,
          batch: inputs.batch,
          soakSeconds: inputs.soakSeconds,
          maxErrors: inputs.maxErrors,
          commandTimeoutS: inputs.commandTimeoutS,
          ...(inputs.deliveryTimeoutS !== undefined ? { deliveryTimeoutS: inputs.deliveryTimeoutS } : {}),
          minHealthyPercent: inputs.minHealthyPercent,
          ...(run.previousRelease !== undefined ? { previousRelease: run.previousRelease } : {}),
        },
        {
          transport,
          traffic: timedTraffic(trafficControllerFor(inputs.traffic, clients, stepPacing(STEP))),
          alarms: alarmGateFor(inputs.alarmNames, clients, stepPacing(STEP)),
          paramsFor: run.paramsFor,
          sleep,
          now,
          log: stepLog(STEP),
          // The bake starts from the canary once it is healthy (alongside its soak), or once it
          // has soaked, as zcp:image.bakeStart says; either way the image stays a candidate.
          ...(candidate && inputs.candidateImage?.start === "soak" ? { onCanaryPassed: (id: string) => timed("fleet: canary hook (bake start)", () => candidate.start(id)) } : {}),
          ...(candidate && inputs.candidateImage?.start !== "soak" ? { onCanaryHealthy: (id: string) => timed("fleet: canary hook (bake start)", () => candidate.start(id)) } : {}),
          onInstance: (r, batches) =>
            emitProgress({
              kind: "instance",
              step: STEP,
              batch: r.batch,
              batches,
              instanceId: r.instanceId,
              status: r.status,
              message: r.message,
              durationMs: r.durationMs,
            }),
        },
      ).catch(async (err: unknown) => {
        await candidate?.retire();
        throw err;
      }).finally(() => run.close());
      mark("fleet: rollout returned");
      const out: FleetDeploymentOutputs = {
        version: inputs.version,
        sha256: inputs.sha256,
        instances: result.instances,
        batches: result.batches,
        imageSourceInstanceId: result.imageSourceInstanceId,
        durationMs: now() - started,
        batchAgentMs: result.batchAgentMs,
        candidateImageId: (await candidate?.imageId()) ?? "",
        batchDrainMs: result.batchDrainMs,
      };
      emitProgress({ kind: "result", step: STEP, data: { ...out } });
      return out;
    }),
  );
}
