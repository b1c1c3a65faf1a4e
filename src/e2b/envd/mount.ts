// Which envd services the server mounts: the process and filesystem Connect services and the
// /files handler (e2b-proc: process*.ts, e2b-fs: filesystem*.ts, files*.ts). One not in yet
// answers Unimplemented (Connect) or 404 (/files).
import type { IncomingMessage, ServerResponse } from "node:http";
import type { ConnectRouter } from "@connectrpc/connect";
import { Filesystem } from "../gen/filesystem_pb.ts";
import { Process } from "../gen/process_pb.ts";
import type { EnvdDeps } from "./context.ts";
import { handleFiles } from "./files.ts";
import { filesystemService } from "./filesystem.ts";
import { processService } from "./process.ts";

export function mountEnvd(router: ConnectRouter, deps: EnvdDeps): void {
  router.service(Process, processService(deps));
  router.service(Filesystem, filesystemService(deps));
}

/** GET/POST /files, when the filesystem part is in. */
mountEnvd.files = handleFiles as ((deps: EnvdDeps, req: IncomingMessage, res: ServerResponse) => Promise<void>) | undefined;
