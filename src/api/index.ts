// Package api is banger's one wire contract between a client (the CLI, the dashboard, any
// future SDK) and bangerd: every RPC method's name, params and result (methods.ts), the
// views those results are made of (fs.ts: a VM's files, vm.ts, images.ts, snapshots.ts, daemon.ts, pools.ts, sandboxes.ts: the E2B API's sandboxes; what the JSON looks like,
// distinct from the store's rows), and the byte-stream events, input and window of streaming
// calls (streams.ts), and the dashboard's HTTP routes, live list, tasks and terminal messages
// (web.ts). `Client` is rpc's client typed against the map, `Handlers` a method table typed
// against it.
//
// It owns no behaviour: no transport (rpc/), no handlers (daemon/), no parameter checking
// (the daemon checks what arrives). Type-only apart from streams.ts's constants, streamEvent
// and outBytes, and stats.ts's pure functions over GuestStats (memory used, CPU busy between
// samples), so the dashboard's browser page imports its types without pulling in Node code.
// Imports nothing of banger's but types (rpc's; util's ProgressEvent and ErrorJson).
import type { RpcClient, TypedMethodTable } from "../rpc/index.ts";
import type { MethodName, Methods } from "./methods.ts";

export type { ApiState, SandboxCreateParams, SandboxMethods, SandboxView } from "./sandboxes.ts";
export type { ExecRequest, MethodName, Methods, ParamsOf, ResultOf, SessionStartParams, VmCreateParams } from "./methods.ts";
export type {
  AttachResult,
  ExitStatus,
  GuestStats,
  Landing,
  ListeningPort,
  MachineView,
  SessionState,
  SessionView,
  VmNetPolicy,
  VmState,
  VmStats,
  VmView,
  WorkspaceView,
} from "./vm.ts";
export type {
  AvailableImage,
  AvailableKernel,
  CatalogEntryView,
  ConfiguredDefaults,
  DefaultsPlan,
  ImageView,
  InstalledKernel,
  KernelView,
  PullDetails,
  PullResult,
  Removed,
} from "./images.ts";
export type {
  AuthorizeResult,
  DaemonStatus,
  DaemonStopResult,
  DnsSetupPlan,
  NetworkStatus,
  OperationState,
  OperationView,
  WebInfo,
  WebState,
} from "./daemon.ts";
export type { FsEntry, FsEvent, FsEventType, FsMethods, FsStreamEvent } from "./fs.ts";
export type { ForkResult, SnapshotRemoved, SnapshotTaken, SnapshotView } from "./snapshots.ts";
export type { PoolList, PoolSetParams, PoolSpecView, PoolView } from "./pools.ts";
export type { ConsoleTail, DashboardVm, DashboardVmStats, TaskView, TerminalControl, TerminalMessage, TerminalMethod, WebRoute, WebRoutes } from "./web.ts";
export { cpuBusyPercent, cpuJiffies, memUsedBytes } from "./stats.ts";
export { INPUT_CHUNK_BYTES, INPUT_WINDOW_BYTES, outBytes, type StreamEvent, type StreamInput, streamEvent } from "./streams.ts";

/** A connection to bangerd whose calls are checked against the method map. */
export type Client = RpcClient<Methods>;

/** Handlers for some methods, each checked to return its method's result (the daemon's table is made of these). */
export type Handlers<K extends MethodName = MethodName> = TypedMethodTable<Methods, K>;
