// The seam between the e2b server (server.ts, which owns routing and auth) and the envd
// services (process*.ts, filesystem*.ts, files*.ts): what a sandbox-plane request is for, and
// the daemon's method table the services call in-process (rpc's callLocal).
import type { Handlers } from "../../api/index.ts";

export interface EnvdSandbox {
  id: string; // the E2B sandbox id (the SDK's E2b-Sandbox-Id header)
  vm: string; // the banger VM behind it
  envVars: Record<string, string>; // the sandbox's envVars from create; every process gets them
}

export interface EnvdDeps {
  methods: Partial<Handlers>; // the daemon's method table (call with rpc's callLocal)
  /** The sandbox a request is for, from its headers (E2b-Sandbox-Id + X-Access-Token):
      throws ConnectError Code.Unauthenticated (bad/missing token) or Code.NotFound. */
  sandboxFor(headers: Headers): Promise<EnvdSandbox>;
}
