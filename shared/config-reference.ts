/**
 * The reference table of docs/configuration.md, generated from the config schema itself, so
 * the documented types, ranges and defaults are the ones `parseConfig` applies.
 *
 *   npm run build && npm run docs:config     rewrites the table in docs/configuration.md
 *
 * tests/unit/config-reference.test.ts fails when the file is not current.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { z } from "zod";
import { CONFIG_NAMESPACE, configSchema } from "./config.js";

export const REFERENCE_START = "<!-- generated from shared/config.ts by `npm run docs:config`; do not edit by hand -->";
export const REFERENCE_END = "<!-- end of generated reference -->";

interface Row {
  key: string;
  type: string;
  default: string;
}

type AnySchema = z.core.$ZodType;

/** Strips optional/default/prefault/preprocess wrappers, noting the default they carry. */
function unwrap(schema: AnySchema): { inner: AnySchema; optional: boolean; defaultValue?: unknown } {
  let s = schema;
  let optional = false;
  let defaultValue: unknown;
  let hasDefault = false;
  for (;;) {
    const def = s._zod.def as unknown as { type: string; innerType?: AnySchema; defaultValue?: unknown; out?: AnySchema; in?: AnySchema };
    if ((def.type === "default" || def.type === "prefault") && def.innerType) {
      if (!hasDefault) {
        defaultValue = def.defaultValue;
        hasDefault = true;
      }
      s = def.innerType;
    } else if (def.type === "optional" && def.innerType) {
      optional = true;
      s = def.innerType;
    } else if (def.type === "pipe" && def.out) {
      // z.preprocess(fn, schema): what the value must be after the conversion.
      s = def.out;
    } else {
      return hasDefault ? { inner: s, optional, defaultValue } : { inner: s, optional };
    }
  }
}

function describeType(schema: AnySchema): string {
  const json = z.toJSONSchema(schema as z.ZodType, { io: "output", unrepresentable: "any" }) as Record<string, unknown>;
  return describeJson(json);
}

function describeJson(json: Record<string, unknown>): string {
  if (Array.isArray(json.enum)) return json.enum.map((v) => `\`${JSON.stringify(v)}\``).join(" \\| ");
  switch (json.type) {
    case "integer": {
      const range = json.minimum !== undefined && json.maximum !== undefined ? ` ${String(json.minimum)}–${String(json.maximum)}` : "";
      return `integer${range}`;
    }
    case "boolean":
      return "boolean";
    case "array":
      return `list of ${describeJson((json.items ?? {}) as Record<string, unknown>)}`;
    case "object":
      return "object";
    case "string":
      return typeof json.pattern === "string" ? `string \`${json.pattern.replace(/\|/g, "\\|")}\`` : "string";
    default:
      return "value";
  }
}

function rows(shape: Record<string, AnySchema>, prefix: string): Row[] {
  const out: Row[] = [];
  for (const [name, field] of Object.entries(shape)) {
    const key = `${prefix}${name}`;
    const { inner, optional, defaultValue } = unwrap(field);
    const innerDef = inner._zod.def as unknown as { type: string; shape?: Record<string, AnySchema> };
    const dflt =
      defaultValue !== undefined
        ? `\`${JSON.stringify(defaultValue)}\``
        : optional
          ? "none"
          : "required";
    if (innerDef.type === "object" && innerDef.shape) {
      out.push({ key, type: "object", default: dflt });
      out.push(...rows(innerDef.shape, `${key}.`));
    } else {
      out.push({ key, type: describeType(inner), default: dflt });
    }
  }
  return out;
}

/** Every key the schema knows, without the namespace: `app`, `github`, `github.sessionDurationS`, … */
export function configKeys(): string[] {
  const shape = (configSchema._zod.def as unknown as { shape: Record<string, AnySchema> }).shape;
  return rows(shape, "").map((r) => r.key);
}

/** The generated markdown table, markers included. */
export function configReference(): string {
  const shape = (configSchema._zod.def as unknown as { shape: Record<string, AnySchema> }).shape;
  const lines = rows(shape, "").map((r) => {
    const [section, ...rest] = r.key.split(".");
    const key = `${CONFIG_NAMESPACE}:${section}${rest.length ? `.${rest.join(".")}` : ""}`;
    return `| \`${key}\` | ${r.type} | ${r.default} |`;
  });
  return [REFERENCE_START, "", "| Key | Type (after YAML strings are read as numbers or booleans) | Default |", "| --- | --- | --- |", ...lines, "", REFERENCE_END].join("\n");
}

export const CONFIGURATION_DOC = path.join(__dirname, "..", "..", "docs", "configuration.md");

/** docs/configuration.md with its reference block replaced by the current one. */
export function withCurrentReference(doc: string): string {
  const start = doc.indexOf(REFERENCE_START);
  const end = doc.indexOf(REFERENCE_END);
  if (start < 0 || end < start) throw new Error(`${CONFIGURATION_DOC}: no generated reference block (${REFERENCE_START} … ${REFERENCE_END})`);
  return doc.slice(0, start) + configReference() + doc.slice(end + REFERENCE_END.length);
}

if (require.main === module) {
  const doc = fs.readFileSync(CONFIGURATION_DOC, "utf8");
  fs.writeFileSync(CONFIGURATION_DOC, withCurrentReference(doc));
  process.stdout.write(`updated ${path.relative(process.cwd(), CONFIGURATION_DOC)}\n`);
}
