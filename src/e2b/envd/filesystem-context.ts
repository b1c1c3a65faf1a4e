// The envd seam as agreed for #17 (e2b-api's src/e2b/envd/context.ts declares exactly this):
// kept here until that branch is merged, then this file imports from there.
import type { Handlers } from "../../api/index.ts";

export interface EnvdSandbox {
  /** The E2B sandbox id (the SDK's E2b-Sandbox-Id header). */
  id: string;
  /** The banger VM behind it. */
  vm: string;
  /** The sandbox's envVars from create; every process gets them. */
  envVars: Record<string, string>;
}

export interface EnvdDeps {
  /** The daemon's method table (call with rpc's callLocal). */
  methods: Partial<Handlers>;
  /**
   * The sandbox a request is for, from its headers (E2b-Sandbox-Id + X-Access-Token):
   * throws ConnectError Code.Unauthenticated (bad/missing token) or Code.NotFound.
   */
  sandboxFor(headers: Headers): Promise<EnvdSandbox>;
}
