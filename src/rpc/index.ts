// Package rpc is banger's JSON-RPC 2.0 transport over a Unix socket: framing, requests,
// responses, error codes, progress/event notifications, input and cancellation.
//
// It knows nothing of VMs or images: the daemon hands the server a method table and the
// CLI makes calls by name; both may be typed against a caller's method map (banger's is
// api/: `RpcClient<Methods>`, `TypedMethodTable<Methods>`). Cancellation (a `$/cancel` notification or the client going
// away) aborts the handler's AbortSignal; cleaning up is the handler's job. callLocal (local.ts)
// runs a table's handler in the same process, for HTTP servers inside the daemon.
export { RpcServer, type CallContext, type Handler, type MethodTable, type ServerLogger, type TypedMethodTable } from "./server.ts";
export { ConnectionLostError, RpcClient, type Call, type CallArgs, type CallOptions, type MethodMap, type Untyped } from "./client.ts";
export { callLocal, InputQueue, type LocalCallOptions } from "./local.ts";
export { MAX_LINE_BYTES, type RequestId } from "./protocol.ts";
export { optionalString, requireString, optionalInt, optionalBool, optionalStringArray, requireObject } from "./params.ts";
