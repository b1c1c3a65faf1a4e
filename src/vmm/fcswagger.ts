// Test support: checks one HTTP request against Firecracker's official swagger file
// (test/fixtures/firecracker/firecracker.yaml, a verbatim copy) the way Firecracker's server would judge
// it: the path and method exist, micro-http's header rules, path IDs, and the body against
// the schema (required fields, types, enums, bounds, and no unknown fields: Firecracker's
// request structs deny them).
import { readFileSync } from "node:fs";
import { parse } from "yaml";

type Schema = {
  $ref?: string;
  type?: string;
  required?: string[];
  properties?: Record<string, Schema>;
  additionalProperties?: boolean | Schema;
  items?: Schema;
  enum?: unknown[];
  minimum?: number;
  maximum?: number;
};

interface Parameter {
  name: string;
  in: string;
  required?: boolean;
  schema?: Schema;
}

interface Swagger {
  paths: Record<string, Record<string, { parameters?: Parameter[] }>>;
  definitions: Record<string, Schema>;
}

export interface RequestCheck {
  /** The swagger path template that matched, e.g. "/drives/{drive_id}". */
  template?: string;
  /** Empty when the request is valid. */
  problems: string[];
}

const ID_CHARSET = /^[a-zA-Z0-9_]+$/;
const ALLOWED_MEDIA = new Set(["application/json", "text/plain"]);

export class SwaggerValidator {
  private readonly spec: Swagger;

  constructor(yamlPath: string) {
    this.spec = parse(readFileSync(yamlPath, "utf8")) as Swagger;
  }

  check(method: string, url: string, headers: Record<string, string | string[] | undefined>, body: string): RequestCheck {
    const problems: string[] = [];
    for (const h of ["content-type", "accept"]) {
      const v = headers[h];
      if (v !== undefined && !ALLOWED_MEDIA.has(String(v))) problems.push(`${h} must be exactly application/json or text/plain, got ${v}`);
    }
    if (headers["transfer-encoding"]) problems.push("chunked bodies are not decoded by micro-http: send Content-Length");
    if (body.length > 0 && headers["content-length"] === undefined) problems.push("body without Content-Length");
    const match = this.matchPath(url);
    if (!match) return { problems: [...problems, `unknown path ${url}`] };
    const op = this.spec.paths[match.template]?.[method.toLowerCase()];
    if (!op) return { template: match.template, problems: [...problems, `method ${method} not allowed on ${match.template}`] };
    const params = op.parameters ?? [];
    const bodyParam = params.find((p) => p.in === "body");
    let parsed: unknown;
    if (body.length > 0) {
      try {
        parsed = JSON.parse(body);
      } catch {
        problems.push("body is not JSON");
      }
    }
    if (bodyParam?.schema && parsed !== undefined) this.validate(parsed, bodyParam.schema, "body", problems);
    if (bodyParam?.required && body.length === 0) problems.push("required body missing");
    if (!bodyParam && body.length > 0) problems.push(`${method} ${match.template} takes no body`);
    for (const p of params.filter((x) => x.in === "path")) {
      const value = match.params[p.name] ?? "";
      if (!ID_CHARSET.test(value)) problems.push(`path id ${JSON.stringify(value)} has characters other than letters, digits, _`);
      const inBody = (parsed as Record<string, unknown> | undefined)?.[p.name];
      if (inBody !== value) problems.push(`path ${p.name} ${JSON.stringify(value)} differs from body ${p.name} ${JSON.stringify(inBody)}`);
    }
    return { template: match.template, problems };
  }

  private matchPath(url: string): { template: string; params: Record<string, string> } | undefined {
    const path = url.split("?")[0] ?? url;
    for (const template of Object.keys(this.spec.paths)) {
      const names: string[] = [];
      const pattern = template.replace(/\{([^}]+)\}/g, (_m, name: string) => {
        names.push(name);
        return "([^/]+)";
      });
      const m = new RegExp(`^${pattern}$`).exec(path);
      if (m) return { template, params: Object.fromEntries(names.map((n, i) => [n, decodeURIComponent(m[i + 1] ?? "")])) };
    }
    return undefined;
  }

  private resolve(schema: Schema): Schema {
    if (!schema.$ref) return schema;
    const name = schema.$ref.replace("#/definitions/", "");
    const def = this.spec.definitions[name];
    if (!def) throw new Error(`swagger: unknown $ref ${schema.$ref}`);
    return this.resolve(def);
  }

  private validate(value: unknown, raw: Schema, at: string, problems: string[]): void {
    const schema = this.resolve(raw);
    const type = schema.type ?? (schema.properties ? "object" : undefined);
    if (schema.enum && !schema.enum.includes(value)) problems.push(`${at}: ${JSON.stringify(value)} is not one of ${schema.enum.join(", ")}`);
    switch (type) {
      case "object":
        return this.validateObject(value, schema, at, problems);
      case "array":
        if (!Array.isArray(value)) return void problems.push(`${at}: expected an array`);
        value.forEach((v, i) => void (schema.items && this.validate(v, schema.items, `${at}[${i}]`, problems)));
        return;
      case "string":
        if (typeof value !== "string") problems.push(`${at}: expected a string`);
        return;
      case "boolean":
        if (typeof value !== "boolean") problems.push(`${at}: expected a boolean`);
        return;
      case "integer":
      case "number":
        if (typeof value !== "number" || (type === "integer" && !Number.isInteger(value))) return void problems.push(`${at}: expected an ${type}`);
        if (schema.minimum !== undefined && value < schema.minimum) problems.push(`${at}: ${value} is below ${schema.minimum}`);
        if (schema.maximum !== undefined && value > schema.maximum) problems.push(`${at}: ${value} is above ${schema.maximum}`);
        return;
    }
  }

  private validateObject(value: unknown, schema: Schema, at: string, problems: string[]): void {
    if (typeof value !== "object" || value === null || Array.isArray(value)) return void problems.push(`${at}: expected an object`);
    const obj = value as Record<string, unknown>;
    for (const r of schema.required ?? []) if (!(r in obj)) problems.push(`${at}: missing required field ${r}`);
    for (const [k, v] of Object.entries(obj)) {
      const prop = schema.properties?.[k];
      if (prop) this.validate(v, prop, `${at}.${k}`, problems);
      else if (typeof schema.additionalProperties === "object") this.validate(v, schema.additionalProperties, `${at}.${k}`, problems);
      else if (schema.additionalProperties !== true) problems.push(`${at}: unknown field ${k}`);
    }
  }
}
