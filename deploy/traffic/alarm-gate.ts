/**
 * Alarm gates: the CloudWatch alarms a release watches during the canary soak and after each
 * batch. One in ALARM stops the release, which then rolls back, as CodeDeploy's alarm
 * configuration and instance refresh's AlarmSpecification do.
 *
 * States come from CloudWatch DescribeAlarms with AlarmNames (at most 100 per call; metric
 * and composite alarms both, AlarmTypes), StateValue OK | ALARM | INSUFFICIENT_DATA
 * (CloudWatch API reference, DescribeAlarms and MetricAlarm). A named alarm that does not
 * exist fails the gate: a misspelt name must not silently switch the gate off.
 */
import { DescribeAlarmsCommand, type CloudWatchClient, type DescribeAlarmsCommandInput } from "@aws-sdk/client-cloudwatch";
import { awsCall, type Pacing } from "../aws/call.js";

const NAMES_PER_CALL = 100;

export interface AlarmGate {
  /** The configured alarms, for messages. */
  readonly names: readonly string[];
  /** Problems that stop the release: `name is in ALARM (reason)` or `name does not exist`. Empty: go on. */
  check(): Promise<string[]>;
}

export const noAlarms: AlarmGate = { names: [], check: async () => [] };

export function buildDescribeAlarmsInput(names: readonly string[]): DescribeAlarmsCommandInput {
  return { AlarmNames: [...names], AlarmTypes: ["MetricAlarm", "CompositeAlarm"], MaxRecords: NAMES_PER_CALL };
}

export function createAlarmGate(cloudWatch: CloudWatchClient, names: readonly string[], pacing: Pacing = {}): AlarmGate {
  if (names.length === 0) return noAlarms;
  return {
    names,
    async check() {
      const seen = new Map<string, { state: string; reason: string }>();
      for (let i = 0; i < names.length; i += NAMES_PER_CALL) {
        const page = names.slice(i, i + NAMES_PER_CALL);
        const out = await awsCall("Alarm states of", page.join(", "), () => cloudWatch.send(new DescribeAlarmsCommand(buildDescribeAlarmsInput(page))), pacing);
        for (const a of [...(out.MetricAlarms ?? []), ...(out.CompositeAlarms ?? [])]) {
          if (a.AlarmName) seen.set(a.AlarmName, { state: a.StateValue ?? "", reason: a.StateReason ?? "" });
        }
      }
      const problems: string[] = [];
      for (const name of names) {
        const a = seen.get(name);
        if (!a) problems.push(`alarm ${name} does not exist`);
        else if (a.state === "ALARM") problems.push(`alarm ${name} is in ALARM${a.reason ? ` (${a.reason})` : ""}`);
      }
      return problems;
    },
  };
}
