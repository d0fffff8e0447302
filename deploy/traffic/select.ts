/** Builds the traffic controller and alarm gate a FleetDeployment's inputs ask for. */
import type { AwsClients } from "../aws/clients.js";
import type { Pacing } from "../aws/call.js";
import { createAlarmGate, type AlarmGate } from "./alarm-gate.js";
import { createAsgStandbyController } from "./asg-standby.js";
import { noTraffic, type TrafficController, type TrafficSpec } from "./controller.js";
import { createHaproxyController } from "./haproxy.js";
import { createTargetGroupController } from "./target-group.js";

export function trafficControllerFor(spec: TrafficSpec, clients: Pick<AwsClients, "autoScaling" | "elb">, pacing: Pacing = {}): TrafficController {
  switch (spec.kind) {
    case "none":
      return noTraffic;
    case "haproxy":
      return createHaproxyController(spec, pacing.log ? { log: pacing.log } : {});
    case "target-group":
      return createTargetGroupController(clients.elb, spec, pacing);
    case "asg-standby":
      return createAsgStandbyController(clients, spec, pacing);
  }
}

export function alarmGateFor(names: readonly string[], clients: Pick<AwsClients, "cloudWatch">, pacing: Pacing = {}): AlarmGate {
  return createAlarmGate(clients.cloudWatch, names, pacing);
}
