import * as aws from "@pulumi/aws";
import * as awsnative from "@pulumi/aws-native";
import * as pulumi from "@pulumi/pulumi";
import { buildDeployDocument, readAgentScript, sha256Hex, type DocumentPins } from "../shared/agent/document.js";
import { deployDocumentName } from "../shared/naming.js";
import { agentPrefix } from "../shared/policy.js";

export interface DeployDocumentArgs {
  app: string;
  environment: string;
  /** Artifact bucket that receives the boot copy of the agent. */
  bucketName: pulumi.Input<string>;
  /** The agent script. @default the repository's `shared/agent/zcp-agent.sh` */
  agentScript?: string;
  /**
   * The configured runtime (app dir, app user, service, app root) the document accepts and
   * nothing else. @default unpinned: any value of the generic patterns
   */
  pins?: DocumentPins;
  /**
   * Default of the document's `executionTimeout` (s): how long one run may take before SSM
   * kills it. Releases send `zcp:deploy.commandTimeoutS` explicitly. @default 3600
   */
  executionTimeoutS?: number;
  /** Tags for the document and the agent copy. @default {} */
  tags?: Record<string, string>;
}

/** Key of the boot copy of an agent script: content-addressed, so a copy never changes. */
export function agentObjectKey(app: string, sha256: string): string {
  return `${agentPrefix(app)}/zcp-agent-${sha256}.sh`;
}

/**
 * The deploy agent, published two ways from one script: the SSM Command document releases
 * send, and a copy in the artifact bucket that launch-template user data runs at boot.
 */
export class DeployDocument extends pulumi.ComponentResource {
  readonly document: awsnative.ssm.Document;
  readonly agentCopy: aws.s3.BucketObjectv2;
  readonly documentName: pulumi.Output<string>;
  /** Key of the agent copy in the artifact bucket. */
  readonly agentKey: string;
  /** SHA-256 of the agent script (hex). */
  readonly agentSha256: string;

  constructor(name: string, args: DeployDocumentArgs, opts: pulumi.ComponentResourceOptions = {}) {
    super("zcp:infra:DeployDocument", name, {}, opts);
    // Read here, synchronously: the document's content is known at preview, so a changed
    // agent shows up as a diff before anything is sent.
    const script = args.agentScript ?? readAgentScript();
    this.agentSha256 = sha256Hex(script);
    this.agentKey = agentObjectKey(args.app, this.agentSha256);
    const tags = args.tags ?? {};

    this.document = this.createDocument(name, args, script, tags);
    this.agentCopy = this.createAgentCopy(name, args.bucketName, script, tags);
    this.documentName = this.document.name.apply((n) => n ?? deployDocumentName(args.app, args.environment));

    this.registerOutputs({ documentName: this.documentName, agentKey: this.agentKey, agentSha256: this.agentSha256 });
  }

  /**
   * aws-native (Cloud Control) rather than `aws.ssm.Document`: with `updateMethod:
   * NewVersion` a changed agent becomes a new version of the same document, made the
   * default, instead of a replacement. The name stays stable, so the release role's policy
   * (which names the document) and commands still running against the previous version are
   * untouched, and SSM keeps the version history of every agent that ever ran.
   */
  private createDocument(name: string, args: DeployDocumentArgs, script: string, tags: Record<string, string>): awsnative.ssm.Document {
    return new awsnative.ssm.Document(
      `${name}-document`,
      {
        name: deployDocumentName(args.app, args.environment),
        documentType: "Command",
        documentFormat: "JSON",
        targetType: "/AWS::EC2::Instance",
        updateMethod: "NewVersion",
        content: buildDeployDocument({
          script,
          ...(args.pins ? { pins: args.pins } : {}),
          ...(args.executionTimeoutS !== undefined ? { executionTimeoutS: args.executionTimeoutS } : {}),
        }),
        tags: Object.entries(tags).map(([key, value]) => ({ key, value })),
      },
      { parent: this },
    );
  }

  private createAgentCopy(name: string, bucket: pulumi.Input<string>, script: string, tags: Record<string, string>): aws.s3.BucketObjectv2 {
    return new aws.s3.BucketObjectv2(
      `${name}-agent-copy`,
      { bucket, key: this.agentKey, content: script, contentType: "text/x-shellscript", tags },
      // Launch-template versions made before an agent change still name the old copy; an
      // instance booted from one must still find it, so old copies stay in the bucket.
      { parent: this, retainOnDelete: true },
    );
  }
}
