/**
 * The zcp policy pack (Pulumi CrossGuard). Run it with a preview or update:
 *
 *   npm run build && pulumi preview --policy-pack policy
 *
 * The rules themselves are pure functions in rules.ts; this file only adapts them to the
 * policy SDK, so tests never start the policy server this module starts on import.
 */
import { PolicyPack, type PolicyResource, type ResourceValidationArgs, UnknownValueError } from "@pulumi/policy";
import { type PolicySubject, RESOURCE_RULES, STACK_RULES } from "./rules.js";

function fromResourceArgs(args: ResourceValidationArgs): PolicySubject {
  return { urn: args.urn, type: args.type, name: args.name, props: args.props };
}

/**
 * A stack's resource props with the values a preview cannot know yet left out and named.
 * The policy SDK throws on reading an unknown value, which would stop a stack rule for the
 * whole stack ("can't run during preview") whenever one new bucket's settings name its
 * not-yet-known id; left out, the rules match settings to buckets by dependency instead and
 * skip only what is unknown. A prop holding an unknown anywhere inside counts as unknown.
 */
function knownProps(props: Record<string, unknown>): { props: Record<string, unknown>; unknown: string[] } {
  const known: Record<string, unknown> = {};
  const unknown: string[] = [];
  for (const key of Object.keys(props)) {
    try {
      const value = props[key];
      known[key] = value === undefined ? undefined : (JSON.parse(JSON.stringify(value)) as unknown);
    } catch (err) {
      if (!(err instanceof UnknownValueError)) throw err;
      unknown.push(key);
    }
  }
  return { props: known, unknown };
}

function fromPolicyResource(r: PolicyResource): PolicySubject {
  const { props, unknown } = knownProps(r.props);
  return {
    urn: r.urn,
    type: r.type,
    name: r.name,
    props,
    unknown,
    id: typeof props["id"] === "string" ? props["id"] : undefined,
    dependencies: r.dependencies.map((d) => d.urn),
  };
}

new PolicyPack("zcp", {
  description: "zcp foundation guardrails: private TLS-only encrypted buckets, no IAM *:*, pinned GitHub OIDC trust, IMDSv2.",
  enforcementLevel: "mandatory",
  policies: [
    ...RESOURCE_RULES.map((rule) => ({
      name: rule.name,
      description: rule.description,
      validateResource: (args: ResourceValidationArgs, reportViolation: (message: string) => void) => {
        for (const message of rule.check(fromResourceArgs(args))) reportViolation(message);
      },
    })),
    ...STACK_RULES.map((rule) => ({
      name: rule.name,
      description: rule.description,
      validateStack: (args: { resources: PolicyResource[] }, reportViolation: (message: string, urn?: string) => void) => {
        for (const v of rule.check(args.resources.map(fromPolicyResource))) reportViolation(v.message, v.urn);
      },
    })),
  ],
});
