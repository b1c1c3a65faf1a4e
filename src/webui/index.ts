// Package webui is the dashboard bangerd serves on loopback: a small page (VMs with create,
// start/stop/pause/resume and remove, one VM with its console, ports, sessions and a terminal,
// images and kernels with pulls, set default and remove, operations),
// the JSON API it uses (documented in openapi.json), live updates over SSE and the terminal
// over a WebSocket. control.ts starts, stops and moves it while the daemon runs (web.reload),
// on a fixed default port (config/keys.ts DEFAULT_WEB_PORT).
//
// It owns the HTTP server, its authentication (API token, one-time login codes, browser
// login cookies, CSRF and Origin checks) and the page's sources under app/ (built by
// scripts/build.mjs into dist/webui/). It does not own any operation: every route calls a
// method of the daemon's method table, the same handler the CLI reaches over the socket.
export { CSRF_HEADER } from "./auth.ts";
export { Dashboard, dashboardSettings, type DashboardSettings, type DashboardState } from "./control.ts";
export type { DaemonTable } from "./invoke.ts";
export type { WebLogger } from "./server.ts";
export { startWebServer, webEnabled, webMethods, type StartWebOptions, type WebHandle } from "./start.ts";
