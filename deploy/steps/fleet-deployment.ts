/** FleetDeployment step: discover the in-service instances, then roll the release out. */
import { ReleaseFailedError } from "../../shared/errors.js";
import { artifactKey } from "../../shared/naming.js";
import { headArtifact, s3Uri } from "../aws/artifacts.js";
import type { SSMClient } from "@aws-sdk/client-ssm";
import { createSsmClient, type AwsClients } from "../aws/clients.js";
import { discoverFleet } from "../aws/fleet.js";
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

const STEP = "FleetDeployment";

export function transportFor(spec: TransportSpec, clients: AwsClients, sendCommandClient?: SSMClient): Transport {
  if (spec.kind === "local") return createLocalTransport({ fleetRoot: spec.fleetRoot });
  return createSsmTransport({
    ssm: clients.ssm,
    ...(sendCommandClient ? { sendCommandClient } : {}),
    documentName: spec.documentName,
    pacing: stepPacing(STEP),
  });
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
      // SendCommand goes through a client without SDK retries: a retry after a lost response
      // would start a second command; the transport looks for the first one instead.
      const sendCommandClient = createSsmClient({ region: inputs.region, maxAttempts: 1 });
      const transport = env.transport ?? transportFor(inputs.transport, clients, sendCommandClient);
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
                  params: await paramsFor(inputs.version),
                  timeoutS: inputs.commandTimeoutS,
                  ...(inputs.deliveryTimeoutS !== undefined ? { deliveryTimeoutS: inputs.deliveryTimeoutS } : {}),
                },
                stepLog(STEP),
              ),
          )
        : undefined;
      const paramsFor = async (version: string, knownSha256?: string): Promise<AgentParams> => {
        const key = version === inputs.version ? inputs.artifactKey : artifactKey(inputs.app, version);
        let sha256 = inputs.sha256;
        if (version !== inputs.version) {
          const head = await headArtifact(clients.s3, inputs.bucket, key, stepPacing(STEP)).catch((err: unknown) => {
            if (knownSha256) return undefined; // the instances still hold the release itself
            throw err;
          });
          const found = head?.sha256 ?? knownSha256;
          if (!found) throw new ReleaseFailedError(`cannot roll back to ${version}: ${s3Uri(inputs.bucket, key)} is missing`);
          sha256 = found;
        }
        return { ...inputs.runtime, app: inputs.app, version, artifact: s3Uri(inputs.bucket, key), sha256 };
      };
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
        },
        {
          transport,
          traffic: trafficControllerFor(inputs.traffic, clients, stepPacing(STEP)),
          alarms: alarmGateFor(inputs.alarmNames, clients, stepPacing(STEP)),
          paramsFor,
          sleep,
          now,
          log: stepLog(STEP),
          ...(candidate ? { onCanaryPassed: (id: string) => candidate.start(id) } : {}),
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
      }).finally(() => sendCommandClient.destroy());
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
