/**
 * The roles' trust policies, as the Roles component deploys them, evaluated by an IAM policy
 * engine over a matrix of GitHub OIDC tokens.
 */
import { expect } from "chai";
import type * as RolesModule from "../../infra/roles.js";
import { GITHUB_AUD_KEY, GITHUB_SUB_KEY } from "../../shared/policy.js";
import { AUD, type ClaimCase, PREVIEW_ALLOWED, PREVIEW_DENIED, RELEASE_ALLOWED, RELEASE_DENIED } from "../fixtures/infra/claims.js";
import { ACCOUNT, PROVIDER_ARN, rolesArgs } from "../fixtures/infra/components.js";
import {
  DEV_PREVIEW_ALLOWED,
  DEV_PREVIEW_DENIED,
  DEV_RELEASE_ALLOWED,
  DEV_RELEASE_DENIED,
  PROD_PREVIEW_ALLOWED,
  PROD_PREVIEW_DEFAULT_ALLOWED,
  PROD_PREVIEW_DEFAULT_DENIED,
  PROD_PREVIEW_DENIED,
  PROD_RELEASE_ALLOWED,
  PROD_RELEASE_DENIED,
  TRUSTED_RELEASE_WORKFLOW_REF,
} from "../fixtures/infra/workflow-claims.js";
import { type MockRecorder, registered, useMocks } from "../helpers/pulumi-mocks.js";
import { decide } from "./support/iam-engine.js";

function context(c: ClaimCase): Record<string, string> {
  const ctx: Record<string, string> = {};
  const aud = "aud" in c ? c.aud : AUD;
  if (aud !== undefined) ctx[GITHUB_AUD_KEY] = aud;
  if (c.sub !== undefined) ctx[GITHUB_SUB_KEY] = c.sub;
  return ctx;
}

describe("trust policies under an IAM engine", () => {
  let mocks: MockRecorder;
  let mod: typeof RolesModule;
  before(async () => {
    mocks = await useMocks();
    mod = await import("../../infra/roles.js");
  });

  /** prod's roles, as Pulumi.prod.yaml configures them: approval environment for previews, release workflow on main. */
  function prodArgs(github: { previewEnvironment?: string; releaseWorkflowRef?: string }) {
    const base = rolesArgs();
    return { ...base, environment: "prod", github: { ...base.github, ...github } };
  }

  async function trustPolicies(name: string, args: ReturnType<typeof rolesArgs> = rolesArgs()) {
    const roles = new mod.Roles(name, args);
    await registered(roles.releaseRole, roles.previewRole);
    const trust = (role: string) => JSON.parse(mocks.get("aws:iam/role:Role", `${name}-${role}`).inputs["assumeRolePolicy"] as string) as object;
    return { release: trust("release"), preview: trust("preview") };
  }

  function assume(trustPolicy: object, role: string, c: ClaimCase, provider = PROVIDER_ARN) {
    return decide({
      principal: provider,
      action: "sts:AssumeRoleWithWebIdentity",
      resource: `arn:aws:iam::${ACCOUNT}:role/${role}`,
      resourceAccount: ACCOUNT,
      context: context(c),
      resourcePolicy: trustPolicy,
    });
  }

  describe("with the repository's ids configured", () => {
    let policies: { release: object; preview: object };
    before(async () => {
      policies = await trustPolicies("trust1");
    });

    for (const c of RELEASE_ALLOWED) {
      it(`release role: allows ${c.name}`, () => {
        expect(assume(policies.release, "zcp-web-dev-release", c)).to.equal("Allowed");
      });
    }
    for (const c of RELEASE_DENIED) {
      it(`release role: denies ${c.name}`, () => {
        expect(assume(policies.release, "zcp-web-dev-release", c)).to.equal("ImplicitlyDenied");
      });
    }
    for (const c of PREVIEW_ALLOWED) {
      it(`preview role: allows ${c.name}`, () => {
        expect(assume(policies.preview, "zcp-web-dev-preview", c)).to.equal("Allowed");
      });
    }
    for (const c of PREVIEW_DENIED) {
      it(`preview role: denies ${c.name}`, () => {
        expect(assume(policies.preview, "zcp-web-dev-preview", c)).to.equal("ImplicitlyDenied");
      });
    }

    it("denies a token from another account's GitHub provider", () => {
      const other = "arn:aws:iam::222222222222:oidc-provider/token.actions.githubusercontent.com";
      expect(assume(policies.release, "zcp-web-dev-release", RELEASE_ALLOWED[0]!, other)).to.equal("ImplicitlyDenied");
    });
  });

  describe("without ids (name form only)", () => {
    let policies: { release: object; preview: object };
    before(async () => {
      policies = await trustPolicies("trust2", rolesArgs({ withIds: false }));
    });

    it("release role: allows the dev environment job in the name form", () => {
      expect(assume(policies.release, "zcp-web-dev-release", RELEASE_ALLOWED[0]!)).to.equal("Allowed");
    });
    it("release role: denies the id form, which it was not told about", () => {
      expect(assume(policies.release, "zcp-web-dev-release", RELEASE_ALLOWED[1]!)).to.equal("ImplicitlyDenied");
    });
    for (const c of RELEASE_DENIED) {
      it(`release role: denies ${c.name}`, () => {
        expect(assume(policies.release, "zcp-web-dev-release", c)).to.equal("ImplicitlyDenied");
      });
    }
    it("preview role: allows a pull request in the name form only", () => {
      expect(assume(policies.preview, "zcp-web-dev-preview", PREVIEW_ALLOWED[0]!)).to.equal("Allowed");
      expect(assume(policies.preview, "zcp-web-dev-preview", PREVIEW_ALLOWED[1]!)).to.equal("ImplicitlyDenied");
    });
  });
  describe("prod: the release role trusts only the reusable release workflow on main (customised subject)", () => {
    let policies: { release: object; preview: object };
    before(async () => {
      policies = await trustPolicies("trust3", prodArgs({ previewEnvironment: "prod-preview", releaseWorkflowRef: TRUSTED_RELEASE_WORKFLOW_REF }));
    });

    for (const c of PROD_RELEASE_ALLOWED) {
      it(`release role: allows ${c.name}`, () => {
        expect(assume(policies.release, "zcp-web-prod-release", c)).to.equal("Allowed");
      });
    }
    for (const c of PROD_RELEASE_DENIED) {
      it(`release role: denies ${c.name}`, () => {
        expect(assume(policies.release, "zcp-web-prod-release", c)).to.equal("ImplicitlyDenied");
      });
    }
    for (const c of PROD_PREVIEW_ALLOWED) {
      it(`preview role: allows ${c.name}`, () => {
        expect(assume(policies.preview, "zcp-web-prod-preview", c)).to.equal("Allowed");
      });
    }
    for (const c of PROD_PREVIEW_DENIED) {
      it(`preview role: denies ${c.name}`, () => {
        expect(assume(policies.preview, "zcp-web-prod-preview", c)).to.equal("ImplicitlyDenied");
      });
    }
    it("release role: keeps the audience pinned (a main-ref subject with another audience is denied)", () => {
      expect(assume(policies.release, "zcp-web-prod-release", { ...PROD_RELEASE_ALLOWED[0]!, aud: "https://github.com/example-org" })).to.equal("ImplicitlyDenied");
      expect(assume(policies.preview, "zcp-web-prod-preview", { ...PROD_PREVIEW_ALLOWED[0]!, aud: undefined })).to.equal("ImplicitlyDenied");
    });
  });

  describe("prod: previews only behind the approval environment (default subject)", () => {
    let policies: { release: object; preview: object };
    before(async () => {
      policies = await trustPolicies("trust4", prodArgs({ previewEnvironment: "prod-preview" }));
    });

    for (const c of PROD_PREVIEW_DEFAULT_ALLOWED) {
      it(`preview role: allows ${c.name}`, () => {
        expect(assume(policies.preview, "zcp-web-prod-preview", c)).to.equal("Allowed");
      });
    }
    for (const c of PROD_PREVIEW_DEFAULT_DENIED) {
      it(`preview role: denies ${c.name}`, () => {
        expect(assume(policies.preview, "zcp-web-prod-preview", c)).to.equal("ImplicitlyDenied");
      });
    }
  });
  describe("dev under the customised subject: release workflow on main, pull requests by pattern", () => {
    let policies: { release: object; preview: object };
    before(async () => {
      policies = await trustPolicies("trust5", { ...prodArgs({ releaseWorkflowRef: TRUSTED_RELEASE_WORKFLOW_REF }), environment: "dev" });
    });

    for (const c of DEV_RELEASE_ALLOWED) {
      it(`release role: allows ${c.name}`, () => {
        expect(assume(policies.release, "zcp-web-dev-release", c)).to.equal("Allowed");
      });
    }
    for (const c of DEV_RELEASE_DENIED) {
      it(`release role: denies ${c.name}`, () => {
        expect(assume(policies.release, "zcp-web-dev-release", c)).to.equal("ImplicitlyDenied");
      });
    }
    for (const c of DEV_PREVIEW_ALLOWED) {
      it(`preview role: allows ${c.name}`, () => {
        expect(assume(policies.preview, "zcp-web-dev-preview", c)).to.equal("Allowed");
      });
    }
    for (const c of DEV_PREVIEW_DENIED) {
      it(`preview role: denies ${c.name}`, () => {
        expect(assume(policies.preview, "zcp-web-dev-preview", c)).to.equal("ImplicitlyDenied");
      });
    }
  });
});
