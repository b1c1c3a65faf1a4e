// Checking a handler's params: each accessor returns a typed value or throws InvalidParams.
import { BangerError, ErrorCode } from "../util/errors.ts";

const bad = (message: string) => new BangerError(ErrorCode.InvalidParams, message);

export function requireObject(params: unknown): Record<string, unknown> {
  if (params === undefined || params === null) return {};
  if (typeof params !== "object" || Array.isArray(params)) throw bad("params must be an object");
  return params as Record<string, unknown>;
}

export function requireString(params: unknown, key: string): string {
  const v = requireObject(params)[key];
  if (typeof v !== "string" || v === "") throw bad(`"${key}" is required and must be a string`);
  return v;
}

export function optionalString(params: unknown, key: string): string | undefined {
  const v = requireObject(params)[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "string") throw bad(`"${key}" must be a string`);
  return v;
}

export function optionalInt(params: unknown, key: string, min = 0, max = Number.MAX_SAFE_INTEGER): number | undefined {
  const v = requireObject(params)[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) throw bad(`"${key}" must be an integer from ${min} to ${max}`);
  return v;
}

export function optionalBool(params: unknown, key: string): boolean | undefined {
  const v = requireObject(params)[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "boolean") throw bad(`"${key}" must be true or false`);
  return v;
}

export function optionalStringArray(params: unknown, key: string, maxItems: number): string[] | undefined {
  const v = requireObject(params)[key];
  if (v === undefined || v === null) return undefined;
  if (!Array.isArray(v) || v.length > maxItems || v.some((s) => typeof s !== "string")) throw bad(`"${key}" must be a list of at most ${maxItems} strings`);
  return v as string[];
}
