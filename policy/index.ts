/**
 * The zcp policy pack (Pulumi CrossGuard). Run it with a preview or update:
 *
 *   npm run build && pulumi preview --policy-pack policy
 *
 * The rules themselves are pure functions in rules.ts; this file only adapts them to the
 * policy SDK, so tests never start the policy server this module starts on import.
 */
import { PolicyPack, type PolicyResource, type ResourceValidationArgs } from "@pulumi/policy";
import { type PolicySubject, RESOURCE_RULES, STACK_RULES } from "./rules.js";

function fromResourceArgs(args: ResourceValidationArgs): PolicySubject {
  return { urn: args.urn, type: args.type, name: args.name, props: args.props };
}

function fromPolicyResource(r: PolicyResource): PolicySubject {
  return {
    urn: r.urn,
    type: r.type,
    name: r.name,
    props: r.props,
    id: typeof r.props["id"] === "string" ? r.props["id"] : undefined,
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
