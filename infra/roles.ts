import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import { roleName } from "../shared/naming.js";
import {
  type GitHubRepository,
  type PromoteSource,
  type GitHubTrustSubjects,
  type RoleScope,
  type StateBackendScope,
  githubPullRequestSubjectPatterns,
  githubSubjects,
  githubTrustPolicy,
  instanceRolePolicy,
  partitionOf,
  policyDocument,
  previewRolePolicy,
  releaseRolePolicy,
} from "../shared/policy.js";

export interface RolesArgs {
  app: string;
  environment: string;
  accountId: string;
  region: string;
  /** The repository whose workflows may assume the release and preview roles. */
  github: GitHubRepository & {
    /** GitHub environment whose jobs may assume the release role. @default `environment` */
    environment?: string;
    /**
     * GitHub environment whose jobs may assume the preview role (one that needs approval, for
     * prod). @default none: pull-request jobs without an environment (`…:pull_request`)
     */
    previewEnvironment?: string | undefined;
    /**
     * The repository's OIDC subject is customised to `["repo", "context", "job_workflow_ref"]`
     * and the release role accepts only jobs running this reusable workflow at this ref
     * (`OWNER/REPO/.github/workflows/zcp-release.yml@refs/heads/main`): checks in that
     * workflow, like "prod tags must be on main", then run from a ref the tagger cannot
     * change. @default none: the default subject template, any workflow of the environment
     */
    releaseWorkflowRef?: string | undefined;
    /**
     * Longest release role session in seconds (`zcp:github.sessionDurationS`, 3600..43200): the
     * role's MaxSessionDuration, the same number the workflows ask for as role-duration-seconds.
     * @default 14400
     */
    sessionDurationS?: number;
  };
  /** ARN of the account's GitHub OIDC provider. */
  oidcProviderArn: pulumi.Input<string>;
  /** Artifact bucket name. */
  bucketName: pulumi.Input<string>;
  /** Name of the zcp deploy document. */
  documentName: pulumi.Input<string>;
  /** The release stack's state backend, when the roles must reach it. @default none */
  stateBackend?: StateBackendScope;
  /**
   * Another environment's artifact bucket (dev's, in prod) whose release artifacts the release
   * role may read for `zcp promote`; that bucket's policy must name this role too. @default none
   */
  promoteFrom?: PromoteSource;
  /** Tags for every role and the instance profile. @default {} */
  tags?: Record<string, string>;
}

/**
 * The three roles: release (GitHub environment jobs), preview (pull requests, read-only) and
 * the instance role with its profile. The release role's launch-template statement is
 * attached by the Fleet, which owns the template (the template needs the instance profile
 * first, so the Roles cannot take its id).
 */
export class Roles extends pulumi.ComponentResource {
  readonly releaseRole: aws.iam.Role;
  readonly releasePolicy: aws.iam.RolePolicy;
  readonly previewRole: aws.iam.Role;
  readonly previewPolicy: aws.iam.RolePolicy;
  readonly instanceRole: aws.iam.Role;
  readonly instanceCore: aws.iam.RolePolicyAttachment;
  readonly instancePolicy: aws.iam.RolePolicy;
  readonly instanceProfile: aws.iam.InstanceProfile;

  readonly releaseRoleArn: pulumi.Output<string>;
  readonly releaseRoleName: pulumi.Output<string>;
  readonly previewRoleArn: pulumi.Output<string>;
  readonly instanceRoleArn: pulumi.Output<string>;
  readonly instanceProfileName: pulumi.Output<string>;

  constructor(name: string, args: RolesArgs, opts: pulumi.ComponentResourceOptions = {}) {
    super("zcp:infra:Roles", name, {}, opts);
    const partition = partitionOf(args.region);
    const tags = args.tags ?? {};
    // A release (rollout, image bake, template and pointer) must finish inside one session; the
    // runner refuses a release whose worst case does not fit in what is left of it. Previews
    // are a few reads and keep IAM's default hour.
    const releaseSessionS = args.github.sessionDurationS ?? 14400;
    const scope = pulumi
      .all([args.bucketName, args.documentName])
      .apply(([bucket, documentName]): RoleScope => ({
        partition,
        region: args.region,
        accountId: args.accountId,
        app: args.app,
        environment: args.environment,
        bucket,
        documentName,
        stateBackend: args.stateBackend,
        promoteFrom: args.promoteFrom,
      }));

    const workflowRef = args.github.releaseWorkflowRef;
    const releaseSubjects = githubSubjects(args.github, { environment: args.github.environment ?? args.environment }, workflowRef);
    this.releaseRole = this.createGitHubRole(`${name}-release`, roleName(args.app, args.environment, "release"), {
      description: `zcp releases of ${args.app} to ${args.environment}, from GitHub environment jobs of ${args.github.owner}/${args.github.repo}`,
      providerArn: args.oidcProviderArn,
      subjects: releaseSubjects,
      maxSessionDuration: releaseSessionS,
      tags,
    });
    this.releasePolicy = this.attachPolicy(`${name}-release-policy`, this.releaseRole, scope.apply(releaseRolePolicy));

    // A customised subject template is repository-wide: pull-request subjects then carry the
    // merge ref's workflow too, so the preview role matches them by pattern (see policy.ts).
    const previewContext = args.github.previewEnvironment !== undefined ? { environment: args.github.previewEnvironment } : "pull_request";
    const previewSubjects: GitHubTrustSubjects =
      workflowRef === undefined
        ? { exact: githubSubjects(args.github, previewContext) }
        : { exact: [], patterns: githubPullRequestSubjectPatterns(args.github, previewContext) };
    this.previewRole = this.createGitHubRole(`${name}-preview`, roleName(args.app, args.environment, "preview"), {
      description: `zcp previews of ${args.app} in ${args.environment}, read-only, from pull requests of ${args.github.owner}/${args.github.repo}${args.github.previewEnvironment !== undefined ? ` (GitHub environment ${args.github.previewEnvironment})` : ""}`,
      providerArn: args.oidcProviderArn,
      subjects: previewSubjects,
      maxSessionDuration: 3600,
      tags,
    });
    this.previewPolicy = this.attachPolicy(`${name}-preview-policy`, this.previewRole, scope.apply(previewRolePolicy));

    this.instanceRole = this.createInstanceRole(name, roleName(args.app, args.environment, "instance"), partition, tags);
    this.instanceCore = new aws.iam.RolePolicyAttachment(
      `${name}-instance-ssm-core`,
      { role: this.instanceRole.name, policyArn: `arn:${partition}:iam::aws:policy/AmazonSSMManagedInstanceCore` },
      { parent: this },
    );
    this.instancePolicy = this.attachPolicy(
      `${name}-instance-policy`,
      this.instanceRole,
      pulumi.output(args.bucketName).apply((bucket) => instanceRolePolicy({ partition, bucket, app: args.app })),
    );
    this.instanceProfile = new aws.iam.InstanceProfile(
      `${name}-instance-profile`,
      { name: roleName(args.app, args.environment, "instance"), role: this.instanceRole.name, tags },
      { parent: this },
    );

    this.releaseRoleArn = this.releaseRole.arn;
    this.releaseRoleName = this.releaseRole.name;
    this.previewRoleArn = this.previewRole.arn;
    this.instanceRoleArn = this.instanceRole.arn;
    this.instanceProfileName = this.instanceProfile.name;
    this.registerOutputs({
      releaseRoleArn: this.releaseRoleArn,
      previewRoleArn: this.previewRoleArn,
      instanceRoleArn: this.instanceRoleArn,
      instanceProfileName: this.instanceProfileName,
    });
  }

  private createGitHubRole(
    resourceName: string,
    roleName: string,
    a: { description: string; providerArn: pulumi.Input<string>; subjects: string[] | GitHubTrustSubjects; maxSessionDuration: number; tags: Record<string, string> },
  ): aws.iam.Role {
    return new aws.iam.Role(
      resourceName,
      {
        name: roleName,
        description: a.description.slice(0, 1000),
        assumeRolePolicy: pulumi.output(a.providerArn).apply((arn) => JSON.stringify(githubTrustPolicy(arn, a.subjects))),
        maxSessionDuration: a.maxSessionDuration,
        tags: a.tags,
      },
      { parent: this },
    );
  }

  private createInstanceRole(name: string, roleName: string, partition: string, tags: Record<string, string>): aws.iam.Role {
    const service = partition === "aws-cn" ? "ec2.amazonaws.com.cn" : "ec2.amazonaws.com";
    const trust = policyDocument([{ Effect: "Allow", Principal: { Service: service }, Action: "sts:AssumeRole" }]);
    return new aws.iam.Role(
      `${name}-instance`,
      { name: roleName, description: "zcp instance role: SSM agent and read-only access to its app's releases", assumeRolePolicy: JSON.stringify(trust), tags },
      { parent: this },
    );
  }

  private attachPolicy(resourceName: string, role: aws.iam.Role, document: pulumi.Output<object>): aws.iam.RolePolicy {
    return new aws.iam.RolePolicy(
      resourceName,
      { role: role.name, name: "zcp", policy: document.apply((d) => JSON.stringify(d)) },
      { parent: this },
    );
  }
}
