import type { PolicySubject } from "../../../policy/rules.js";
import type { RecordedResource } from "../../helpers/pulumi-mocks.js";

/** A recorded mock resource as the policy pack would see it (state includes the inputs). */
export function asSubject(r: RecordedResource): PolicySubject {
  return { urn: `urn:pulumi:dev::zcp::${r.type}::${r.name}`, type: r.type, name: r.name, props: r.state, id: r.id };
}
