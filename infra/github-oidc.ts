import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import { ConfigError } from "../shared/errors.js";
import { GITHUB_OIDC_URL, STS_AUDIENCE } from "../shared/policy.js";

interface CommonArgs {
  /** Tags for a created provider. @default {} */
  tags?: Record<string, string>;
}

/**
 * An account has at most one OIDC provider per URL, so the GitHub provider is either created
 * by this stack or adopted from whoever created it first; never both.
 */
export type GitHubOidcArgs =
  | (CommonArgs & { create: true; existingProviderArn?: never })
  | (CommonArgs & { existingProviderArn: string; create?: never });

/** The account's GitHub Actions OIDC identity provider. */
export class GitHubOidc extends pulumi.ComponentResource {
  /** The provider, when this stack created it. */
  readonly provider?: aws.iam.OpenIdConnectProvider;
  /** ARN of the provider the roles trust, created or adopted. */
  readonly providerArn: pulumi.Output<string>;

  constructor(name: string, args: GitHubOidcArgs, opts: pulumi.ComponentResourceOptions = {}) {
    super("zcp:infra:GitHubOidc", name, {}, opts);
    // The type already forbids both; this keeps untyped callers honest too.
    const wantsCreate = (args as { create?: unknown }).create === true;
    const existing = (args as { existingProviderArn?: unknown }).existingProviderArn;
    if (wantsCreate === (existing !== undefined)) {
      throw new ConfigError("zcp:oidc", "set either create: true or existingProviderArn, not both and not neither");
    }

    if (typeof existing === "string") {
      this.providerArn = this.adoptProvider(existing);
    } else {
      this.provider = this.createProvider(name, args.tags ?? {});
      this.providerArn = this.provider.arn;
    }
    this.registerOutputs({ providerArn: this.providerArn });
  }

  private createProvider(name: string, tags: Record<string, string>): aws.iam.OpenIdConnectProvider {
    return new aws.iam.OpenIdConnectProvider(
      `${name}-provider`,
      {
        url: GITHUB_OIDC_URL,
        clientIdLists: [STS_AUDIENCE],
        // No thumbprints: IAM validates GitHub's certificate against its own trusted CAs and
        // ignores thumbprints for this provider, so pinning one would only add a rotation chore.
        tags,
      },
      { parent: this },
    );
  }

  /**
   * Reads the existing provider so a typo or a provider without the `sts.amazonaws.com`
   * audience fails at preview, before any role trusts it.
   */
  private adoptProvider(arn: string): pulumi.Output<string> {
    const found = aws.iam.getOpenIdConnectProviderOutput({ arn }, { parent: this });
    return found.apply((p) => {
      if (!p.clientIdLists.includes(STS_AUDIENCE)) {
        throw new ConfigError(
          "zcp:oidc.existingProviderArn",
          `provider ${p.arn} does not list the audience ${STS_AUDIENCE}; add it to the provider's client ids`,
        );
      }
      return p.arn;
    });
  }
}
