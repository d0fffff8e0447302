/**
 * Evaluates IAM requests against real policy documents with @cloud-copilot/iam-simulate.
 *
 * Why not its `runSimulation`: that entry point validates context keys against its action
 * data, which lacks GitHub's `token.actions.githubusercontent.com:sub` / `:aud`, and drops
 * them, so every trust-policy request would read as denied (and an "allowed" case could
 * never pass). `runUnsafeSimulation` skips validation but fails on a resource policy (it
 * loads it without the name metadata the engine reads). So this calls the engine's
 * `authorize` directly with fully built requests. The package exports only its root
 * module, so the engine files are loaded by path from the installed package.
 */
import * as path from "node:path";

interface LoadedPolicy {
  readonly __loaded: true;
}
type RequestContext = { readonly __context: true };
type AwsRequest = { readonly __request: true };

interface Engine {
  authorize(request: {
    request: AwsRequest;
    sessionPolicy: undefined;
    identityPolicies: LoadedPolicy[];
    serviceControlPolicies: [];
    resourceControlPolicies: [];
    resourcePolicy: LoadedPolicy | undefined;
    permissionBoundaries: undefined;
    vpcEndpointPolicies: undefined;
    simulationParameters: { simulationMode: "Strict"; discoveryContextKeyConstraints: unknown };
  }): { result: string };
}

const root = path.dirname(require.resolve("@cloud-copilot/iam-simulate"));
const engine = require(path.join(root, "core_engine", "CoreSimulatorEngine.js")) as Engine;
const { AwsRequestImpl } = require(path.join(root, "request", "request.js")) as {
  AwsRequestImpl: new (principal: string, resource: { resource: string; accountId: string }, action: string, context: RequestContext) => AwsRequest;
};
const { RequestContextImpl } = require(path.join(root, "requestContext.js")) as {
  RequestContextImpl: new (values: Record<string, string | string[]>) => RequestContext;
};
const { DiscoveryContextKeyConstraints } = require(path.join(root, "context_keys", "discoveryContextKeyConstraints.js")) as {
  DiscoveryContextKeyConstraints: new (constraints: unknown[]) => unknown;
};
const { loadPolicy } = require(require.resolve("@cloud-copilot/iam-policy", { paths: [root] })) as {
  loadPolicy(policy: unknown, metadata: { name: string }): LoadedPolicy;
};

export type Decision = "Allowed" | "ImplicitlyDenied" | "ExplicitlyDenied" | string;

export interface IamRequest {
  /** The caller: a role session ARN, or an OIDC provider ARN for AssumeRoleWithWebIdentity. */
  principal: string;
  action: string;
  resource: string;
  /** Account that owns the resource. */
  resourceAccount: string;
  context?: Record<string, string | string[]>;
  /** The caller's identity policies. */
  identityPolicies?: readonly object[];
  /** The resource's policy (a role's trust policy, a bucket policy). */
  resourcePolicy?: object;
}

/** The engine's decision for one request, as AWS would make it (Strict mode). */
export function decide(r: IamRequest): Decision {
  const request = new AwsRequestImpl(
    r.principal,
    { resource: r.resource, accountId: r.resourceAccount },
    r.action,
    new RequestContextImpl(r.context ?? {}),
  );
  const analysis = engine.authorize({
    request,
    sessionPolicy: undefined,
    identityPolicies: (r.identityPolicies ?? []).map((p, i) => loadPolicy(p, { name: `identity-${i}` })),
    serviceControlPolicies: [],
    resourceControlPolicies: [],
    resourcePolicy: r.resourcePolicy ? loadPolicy(r.resourcePolicy, { name: "resource-policy" }) : undefined,
    permissionBoundaries: undefined,
    vpcEndpointPolicies: undefined,
    simulationParameters: { simulationMode: "Strict", discoveryContextKeyConstraints: new DiscoveryContextKeyConstraints([]) },
  });
  return analysis.result;
}
