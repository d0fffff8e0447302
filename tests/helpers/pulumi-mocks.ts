/**
 * Pulumi mocks for unit tests: a recorder that keeps every `newResource` and `call` the
 * program makes, answers with plausible provider state (ids, ARNs, names), and helpers to
 * await outputs and read parentage and resource options.
 *
 * Pulumi mocks are process-global: install them with `useMocks()` before importing the
 * program or a component (use `await import(...)`), and give each test's resources names of
 * their own so a test only looks at what it created.
 */
import * as crypto from "node:crypto";
import * as pulumi from "@pulumi/pulumi";

export const MOCK_ACCOUNT_ID = "111111111111";
export const MOCK_REGION = "eu-west-1";
export const MOCK_PROJECT = "zero-credential-pipeline";

export interface RecordedResource {
  type: string;
  name: string;
  /** The inputs the program sent, outputs resolved. */
  inputs: Record<string, unknown>;
  /** The id the mock answered with. */
  id: string;
  /** The state the mock answered with (inputs plus computed outputs). */
  state: Record<string, unknown>;
  custom: boolean;
  /** Provider reference (`urn::id`) the resource was registered with, if any. */
  provider?: string;
}

export interface RecordedCall {
  token: string;
  inputs: Record<string, unknown>;
}

type CallHandler = (inputs: Record<string, unknown>) => Record<string, unknown>;

function hex(seed: string, length: number): string {
  return crypto.createHash("sha256").update(seed).digest("hex").slice(0, length);
}

/** The id the mocks give the launch template resource named `name`. */
export function mockLaunchTemplateId(name: string): string {
  return `lt-${hex(name, 17)}`;
}

/** Computed outputs a real provider would return, for the types zcp reads outputs of. */
function computedState(type: string, name: string, inputs: Record<string, unknown>, account: string, region: string): {
  id: string;
  state: Record<string, unknown>;
} {
  const given = (key: string) => (typeof inputs[key] === "string" ? (inputs[key] as string) : undefined);
  switch (type) {
    case "aws:s3/bucket:Bucket": {
      const bucket = given("bucket") ?? `${given("bucketPrefix") ?? `${name}-`}${hex(name, 7)}`;
      return { id: bucket, state: { bucket, arn: `arn:aws:s3:::${bucket}` } };
    }
    case "aws:iam/role:Role": {
      const roleName = given("name") ?? `${name}-${hex(name, 7)}`;
      return { id: roleName, state: { name: roleName, arn: `arn:aws:iam::${account}:role/${roleName}`, uniqueId: `AROA${hex(name, 16).toUpperCase()}` } };
    }
    case "aws:iam/instanceProfile:InstanceProfile": {
      const profile = given("name") ?? `${name}-${hex(name, 7)}`;
      return { id: profile, state: { name: profile, arn: `arn:aws:iam::${account}:instance-profile/${profile}` } };
    }
    case "aws:iam/openIdConnectProvider:OpenIdConnectProvider": {
      const host = (given("url") ?? "").replace(/^https:\/\//, "");
      const arn = `arn:aws:iam::${account}:oidc-provider/${host}`;
      return { id: arn, state: { arn } };
    }
    case "aws:ec2/launchTemplate:LaunchTemplate": {
      const id = mockLaunchTemplateId(name);
      return { id, state: { arn: `arn:aws:ec2:${region}:${account}:launch-template/${id}`, latestVersion: 1, defaultVersion: 1 } };
    }
    case "aws:autoscaling/group:Group": {
      const group = given("name") ?? `${name}-${hex(name, 7)}`;
      return { id: group, state: { name: group, arn: `arn:aws:autoscaling:${region}:${account}:autoScalingGroup:${hex(name, 8)}:autoScalingGroupName/${group}` } };
    }
    case "aws:lb/targetGroup:TargetGroup":
      return { id: `${name}-id`, state: { arn: `arn:aws:elasticloadbalancing:${region}:${account}:targetgroup/${name}/${hex(name, 16)}` } };
    case "aws-native:ssm:Document":
      return { id: given("name") ?? name, state: {} };
    default:
      return { id: `${name}-id`, state: {} };
  }
}

export class MockRecorder implements pulumi.runtime.Mocks {
  readonly resources: RecordedResource[] = [];
  readonly calls: RecordedCall[] = [];
  /** Invoke results by token; unset tokens echo their inputs. */
  readonly callHandlers = new Map<string, CallHandler>();

  constructor(
    readonly accountId = MOCK_ACCOUNT_ID,
    readonly region = MOCK_REGION,
  ) {
    this.callHandlers.set("aws:iam/getOpenIdConnectProvider:getOpenIdConnectProvider", (inputs) => ({
      arn: inputs["arn"],
      id: inputs["arn"],
      url: "token.actions.githubusercontent.com",
      clientIdLists: ["sts.amazonaws.com"],
      thumbprintLists: [],
      tags: {},
    }));
    this.callHandlers.set("aws:autoscaling/getGroup:getGroup", (inputs) => ({
      name: inputs["name"],
      id: inputs["name"],
      arn: `arn:aws:autoscaling:${region}:${accountId}:autoScalingGroup:0:autoScalingGroupName/${String(inputs["name"])}`,
      launchTemplates: [],
      mixedInstancesPolicies: [],
    }));
  }

  newResource(args: pulumi.runtime.MockResourceArgs): { id: string; state: Record<string, unknown> } {
    const inputs = (args.inputs ?? {}) as Record<string, unknown>;
    const computed = computedState(args.type, args.name, inputs, this.accountId, this.region);
    const id = args.id || computed.id;
    const state = { ...inputs, ...computed.state };
    this.resources.push({
      type: args.type,
      name: args.name,
      inputs,
      id,
      state,
      custom: args.custom ?? true,
      ...(args.provider ? { provider: args.provider } : {}),
    });
    return { id, state };
  }

  call(args: pulumi.runtime.MockCallArgs): Record<string, unknown> {
    const inputs = (args.inputs ?? {}) as Record<string, unknown>;
    this.calls.push({ token: args.token, inputs });
    const handler = this.callHandlers.get(args.token);
    return handler ? handler(inputs) : inputs;
  }

  /** Resources whose name starts with `prefix` (a component's name covers its children). */
  named(prefix: string): RecordedResource[] {
    return this.resources.filter((r) => r.name === prefix || r.name.startsWith(`${prefix}-`));
  }

  /** The one resource of `type` named `name`; throws when there is none or more than one. */
  get(type: string, name: string): RecordedResource {
    const found = this.resources.filter((r) => r.type === type && r.name === name);
    if (found.length !== 1) {
      const known = this.resources.map((r) => `${r.type} ${r.name}`).join("\n  ");
      throw new Error(`expected one ${type} named ${name}, found ${found.length}; recorded:\n  ${known}`);
    }
    return found[0]!;
  }
}

let recorder: MockRecorder | undefined;

/**
 * Installs the shared recorder as Pulumi's mocks (idempotent), for stack `stack` of the
 * foundation project, and returns it.
 */
export async function useMocks(options: { stack?: string; config?: Record<string, string> } = {}): Promise<MockRecorder> {
  recorder ??= new MockRecorder();
  if (options.config) pulumi.runtime.setAllConfig(options.config);
  await pulumi.runtime.setMocks(recorder, MOCK_PROJECT, options.stack ?? "dev", false);
  return recorder;
}

/**
 * Resolves an output's value, or rejects with the error that produced it (assert on the
 * result afterwards, never inside `apply`). Uses the Output's own promise, which the SDK
 * keeps internal but every Output has.
 */
export function valueOf<T>(output: pulumi.Input<T>): Promise<T> {
  const o = pulumi.output(output) as unknown as { promise(): Promise<T> };
  return o.promise();
}

/** Waits until every resource is registered (its URN assigned by the mock monitor). */
export async function registered(...resources: (pulumi.Resource | undefined)[]): Promise<string[]> {
  return Promise.all(resources.filter((r): r is pulumi.Resource => r !== undefined).map((r) => valueOf(r.urn)));
}

/** The type of a resource's parent, read from its URN (`…::Parent$Child::name`). */
export function parentTypeOf(urn: string): string | undefined {
  const types = urn.split("::")[2]?.split("$") ?? [];
  return types.length > 1 ? types[types.length - 2] : undefined;
}

export interface RecordedOptions {
  type: string;
  name: string;
  opts: pulumi.CustomResourceOptions;
}

/**
 * A transformation that records each child's resource options (parent, ignoreChanges,
 * dependsOn, retainOnDelete), which the mock monitor does not see. Pass it as a
 * component's `transformations`: Pulumi applies a parent's transformations to its children.
 */
export function optionsRecorder(): { transformation: pulumi.ResourceTransformation; records: RecordedOptions[] } {
  const records: RecordedOptions[] = [];
  const transformation: pulumi.ResourceTransformation = (args) => {
    records.push({ type: args.type, name: args.name, opts: args.opts as pulumi.CustomResourceOptions });
    return undefined;
  };
  return { transformation, records };
}
