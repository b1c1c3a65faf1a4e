// Which envd services the server mounts: the process and filesystem Connect services and the
// /files handler (e2b-proc: process*.ts, e2b-fs: filesystem*.ts, files*.ts). One not in yet
// answers Unimplemented (Connect) or 404 (/files). Also the gate every RPC passes before its
// body is read: its sandbox and access token.
import type { IncomingMessage, ServerResponse } from "node:http";
import type { ConnectRouter, HandlerContext } from "@connectrpc/connect";
import { Filesystem } from "../gen/filesystem_pb.ts";
import { Process } from "../gen/process_pb.ts";
import type { EnvdDeps } from "./context.ts";
import { handleFiles } from "./files.ts";
import { sandboxOf } from "./filesystem-shared.ts";
import { filesystemService } from "./filesystem.ts";
import { processService } from "./process.ts";

export function mountEnvd(router: ConnectRouter, deps: EnvdDeps): void {
  router.service(Process, processService(deps));
  router.service(Filesystem, filesystemService(deps));
}

/**
 * Connect's requestGate: the request's sandbox and token are checked from its headers alone,
 * so a client without them never gets its body read (Connect would buffer a unary message of
 * up to readMaxBytes first). Errors as each service answers them (the filesystem's gone
 * sandbox is Unavailable); the handlers look the sandbox up again.
 */
export async function envdGate(deps: EnvdDeps, ctx: HandlerContext): Promise<void> {
  if (ctx.service.typeName === Filesystem.typeName) await sandboxOf(deps, ctx.requestHeader);
  else await deps.sandboxFor(ctx.requestHeader);
}

/** GET/POST /files, when the filesystem part is in. */
mountEnvd.files = handleFiles as ((deps: EnvdDeps, req: IncomingMessage, res: ServerResponse) => Promise<void>) | undefined;
