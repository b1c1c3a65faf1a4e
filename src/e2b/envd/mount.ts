// Which envd services the server mounts: the process and filesystem Connect services and the
// /files handler, once their modules exist (e2b-proc: process*.ts, e2b-fs: filesystem*.ts,
// files*.ts). Until then nothing is mounted: a Connect call answers Unimplemented and /files 404.
import type { IncomingMessage, ServerResponse } from "node:http";
import type { ConnectRouter } from "@connectrpc/connect";
import type { EnvdDeps } from "./context.ts";

export function mountEnvd(_router: ConnectRouter, _deps: EnvdDeps): void {}

/** GET/POST /files, when the filesystem part is in. */
mountEnvd.files = undefined as ((deps: EnvdDeps, req: IncomingMessage, res: ServerResponse) => Promise<void>) | undefined;
