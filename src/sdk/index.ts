// Package sdk is banger's TypeScript SDK, what `import { Banger } from "banger"` gives a
// program: a typed client over the daemon socket speaking the same contract as the CLI (api/'s
// Methods through rpc/'s client; launch/ finds or starts bangerd for the root). `Banger.connect`
// opens it; `vms`, `images`, `snapshots` are the collections; a `Vm` runs commands (exec:
// gathered and bounded; spawn: streamed), writes and reads files (one-file tars over
// vm.files.put/get), stops, removes, snapshots, forks and exports its workspace as a patch.
// Failures are BangerErrors (a code, one line, a hint). The uploader (a local stream sent as
// a call's input within the acknowledged window) lives here and the CLI uses it too.
//
// It owns no daemon behaviour (daemon/) and no wire shapes (api/): it is a client like the
// CLI and the MCP server (mcp/, built on it). Built by scripts/build.mjs into dist/sdk.js with
// its declarations under dist/types/ (package.json "exports"); the example is examples/sdk.ts.
export type { ExitStatus, ForkResult, ImageView, SnapshotTaken, SnapshotView, VmCreateParams, VmState, VmView } from "../api/index.ts";
export { BangerError, ErrorCode, errorLine } from "../util/errors.ts";
export { Banger, type ConnectOptions, type CreateOptions, Images, Snapshots, Vms } from "./client.ts";
export { type Command, ExecTimeoutError, type ExecOptions, type ExecResult, type ExitResult, type SpawnOptions, type VmProcess } from "./exec.ts";
export type { FileHead, WriteFileOptions } from "./files.ts";
export { Uploader } from "./uploader.ts";
export { Vm } from "./vm.ts";
export type { WorkspaceExport } from "./workspace.ts";
export { exportWorkspace } from "./workspace.ts";
