// Package e2b is the E2B-compatible API bangerd serves (opt-in: `api.enabled`, `bangerd --api`)
// on 127.0.0.1:`api.port`, so agent harnesses written against the official `e2b` SDK drive
// banger VMs. It owns the HTTP server and its routing (server.ts), the API key's checks
// (keys.ts: stored by the daemon, compared here), the control plane's REST routes (control*.ts:
// /sandboxes, /v2/sandboxes, /snapshots, in openapi.yml's shapes and errors) and the sandbox
// plane's envd services (envd/: Connect process and filesystem services, /files, /health,
// /envs), routed by the E2b-Sandbox-Id header and checked against the sandbox's access token.
//
// It does not own sandboxes: their records, expiry, and the VMs behind them are the daemon's
// (the sandbox.* methods, api/sandboxes.ts). Like the dashboard it is a client of bangerd that
// lives in its process: it calls the daemon's method table in-process (rpc's callLocal) and
// imports only client-side folders (api/, rpc/, util/, config/), never daemon/ or store/.
export type { EnvdDeps, EnvdSandbox } from "./envd/context.ts";
export { E2bServer, type E2bServerOptions } from "./server.ts";
export { API_HOST, ApiService, apiSettings, type ApiSettings } from "./service.ts";
