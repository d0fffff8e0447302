/**
 * Builds the AWS SDK clients the release runner uses. Nothing here is created at module
 * load: dynamic providers are serialized into the engine's provider host, and a client built
 * at import time would be frozen into state (or hold a socket that keeps the host alive), so
 * providers call these factories inside their methods.
 */
import { AutoScalingClient } from "@aws-sdk/client-auto-scaling";
import { CloudWatchClient } from "@aws-sdk/client-cloudwatch";
import { ElasticLoadBalancingV2Client } from "@aws-sdk/client-elastic-load-balancing-v2";
import { EC2Client } from "@aws-sdk/client-ec2";
import { S3Client } from "@aws-sdk/client-s3";
import { SSMClient, type SSMClientConfig } from "@aws-sdk/client-ssm";
import { STSClient } from "@aws-sdk/client-sts";
import { ConfigError } from "../../shared/errors.js";

/** Static credentials or a provider, as every v3 client accepts them. */
export type AwsCredentials = NonNullable<SSMClientConfig["credentials"]>;

export interface AwsClientConfig {
  /** The environment's region, as the foundation stack exported it. */
  region: string;
  /**
   * An endpoint that replaces every service's public one (the local emulator).
   * @default the `AWS_ENDPOINT_URL` environment variable, else the public AWS endpoints
   */
  endpoint?: string;
  /**
   * Explicit credentials. Left out, the SDK's default chain resolves them (in CI: the OIDC
   * web-identity session that the workflow's configure step exported).
   * @default the SDK default credential chain
   */
  credentials?: AwsCredentials;
  /**
   * Attempts per request inside the SDK's adaptive retry (client-side rate limiting plus
   * retries on throttling and transient errors): the only per-request retry of an ordinary
   * call. SendCommand's client sets 1 (`createSendCommandClient`).
   * @default 5
   */
  maxAttempts?: number;
}

export interface AwsClients {
  ssm: SSMClient;
  ec2: EC2Client;
  s3: S3Client;
  autoScaling: AutoScalingClient;
  sts: STSClient;
  elb: ElasticLoadBalancingV2Client;
  cloudWatch: CloudWatchClient;
}

/** The options every client shares, with the endpoint resolved from the environment when not given. */
export function resolveClientConfig(cfg: AwsClientConfig, env: NodeJS.ProcessEnv = process.env) {
  if (!cfg.region) throw new ConfigError("region", "an AWS region is required to build clients");
  const endpoint = cfg.endpoint ?? (env.AWS_ENDPOINT_URL || undefined);
  return {
    region: cfg.region,
    // Adaptive retry adds a client-side token bucket: a burst of SSM status calls slows down
    // before the service starts throttling, instead of after.
    retryMode: "adaptive" as const,
    maxAttempts: cfg.maxAttempts ?? 5,
    ...(endpoint ? { endpoint } : {}),
    ...(cfg.credentials ? { credentials: cfg.credentials } : {}),
  };
}

export function createSsmClient(cfg: AwsClientConfig, env: NodeJS.ProcessEnv = process.env): SSMClient {
  return new SSMClient(resolveClientConfig(cfg, env));
}

/**
 * The client for SendCommand only: the SDK's retries off, because SendCommand has no
 * idempotency token and a blind resend after a lost response starts a second command. The ssm
 * transport's token-checked resend is its one retry layer (deploy/transports/ssm.ts).
 */
export function createSendCommandClient(cfg: AwsClientConfig, env: NodeJS.ProcessEnv = process.env): SSMClient {
  return createSsmClient({ ...cfg, maxAttempts: 1 }, env);
}

export function createEc2Client(cfg: AwsClientConfig, env: NodeJS.ProcessEnv = process.env): EC2Client {
  return new EC2Client(resolveClientConfig(cfg, env));
}

export function createS3Client(cfg: AwsClientConfig, env: NodeJS.ProcessEnv = process.env): S3Client {
  const base = resolveClientConfig(cfg, env);
  // An emulator answers on one host name; virtual-hosted bucket names (bucket.127.0.0.1)
  // do not resolve, so path-style addressing is required whenever an endpoint is set.
  return new S3Client(base.endpoint ? { ...base, forcePathStyle: true } : base);
}

export function createAutoScalingClient(cfg: AwsClientConfig, env: NodeJS.ProcessEnv = process.env): AutoScalingClient {
  return new AutoScalingClient(resolveClientConfig(cfg, env));
}

export function createStsClient(cfg: AwsClientConfig, env: NodeJS.ProcessEnv = process.env): STSClient {
  return new STSClient(resolveClientConfig(cfg, env));
}

/** All clients for one environment. Call `destroyAwsClients` when done so sockets close. */
export function createAwsClients(cfg: AwsClientConfig, env: NodeJS.ProcessEnv = process.env): AwsClients {
  return {
    ssm: createSsmClient(cfg, env),
    ec2: createEc2Client(cfg, env),
    s3: createS3Client(cfg, env),
    autoScaling: createAutoScalingClient(cfg, env),
    sts: createStsClient(cfg, env),
    elb: new ElasticLoadBalancingV2Client(resolveClientConfig(cfg, env)),
    cloudWatch: new CloudWatchClient(resolveClientConfig(cfg, env)),
  };
}

export function destroyAwsClients(clients: Partial<AwsClients>): void {
  for (const c of Object.values(clients)) c?.destroy();
}
