// What envd's filesystem service and /files share: calling the daemon's vm.fs.* methods in
// process (rpc's callLocal), the user a request acts as, EntryInfo from banger's FsEntry, and
// a daemon error as the Connect code or HTTP status the E2B SDK turns into its own errors
// (NotFound -> FileNotFoundError, InvalidArgument, AlreadyExists -> makeDir's false, ...).
import type { MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import type { FsEntry, MethodName, ParamsOf, ResultOf } from "../../api/index.ts";
import { type Handler, type LocalCallOptions, callLocal } from "../../rpc/index.ts";
import { BangerError, ErrorCode } from "../../util/errors.ts";
import { type EntryInfoSchema, FileType } from "../gen/filesystem_pb.ts";
import type { EnvdDeps, EnvdSandbox } from "./context.ts";

/** Runs one of the daemon's methods in this process, as an RPC call over the socket would. */
export async function callDaemon<M extends MethodName>(deps: EnvdDeps, method: M, params: ParamsOf<M>, opts: LocalCallOptions<unknown, unknown>): Promise<ResultOf<M>> {
  return (await callLocal(deps.methods as Partial<Record<string, Handler>>, method, params, opts)) as ResultOf<M>;
}

/**
 * The sandbox a request is for. One that is gone is answered as E2B's proxy does (its 502
 * reaches Connect as Unavailable): the SDK then says the sandbox is not running, rather than
 * that a file was not found.
 */
export async function sandboxOf(deps: EnvdDeps, headers: Headers): Promise<EnvdSandbox> {
  try {
    return await deps.sandboxFor(headers);
  } catch (err) {
    if (err instanceof ConnectError && err.code === Code.NotFound) throw new ConnectError(err.rawMessage, Code.Unavailable);
    throw err;
  }
}

/** A user name or uid as the guest's passwd has them; anything else is refused before the guest sees it. */
const USER = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,63}$/;

/** The user a request names (undefined: the sandbox's default, where commands land). */
export function checkUser(user: string | undefined | null): string | undefined {
  if (user === undefined || user === null || user === "") return undefined;
  if (!USER.test(user)) throw new ConnectError(`invalid user ${JSON.stringify(user.slice(0, 64))}`, Code.Unauthenticated);
  return user;
}

/** The user of an `Authorization: Basic base64("user:")` header, which the SDK sends per call. */
export function userFromHeaders(headers: Headers): string | undefined {
  const auth = headers.get("authorization");
  if (!auth || auth.length > 512) return undefined;
  const m = /^Basic\s+([A-Za-z0-9+/=]+)$/i.exec(auth.trim());
  if (!m) return undefined;
  const decoded = Buffer.from(m[1]!, "base64").toString("utf8");
  const colon = decoded.indexOf(":");
  return checkUser(colon >= 0 ? decoded.slice(0, colon) : decoded);
}

export function entryInfo(e: FsEntry): MessageInitShape<typeof EntryInfoSchema> {
  const type = e.type === "file" ? FileType.FILE : e.type === "dir" ? FileType.DIRECTORY : e.type === "symlink" ? FileType.SYMLINK : FileType.UNSPECIFIED;
  return {
    name: e.name,
    type,
    path: e.path,
    size: BigInt(e.sizeBytes),
    mode: e.mode,
    permissions: e.permissions,
    owner: e.owner,
    group: e.group,
    modifiedTime: { seconds: BigInt(e.mtime.seconds), nanos: e.mtime.nanos },
    symlinkTarget: e.symlinkTarget,
  };
}

/** The agent's answer when the request's user is not in the guest's /etc/passwd. */
function isUnknownUser(err: BangerError): boolean {
  return err.code === ErrorCode.NotFound && /\buser "[^"]*" not found\b/.test(err.message);
}

/** What a daemon method threw, as the Connect error the SDK maps (envd's codes for the same cases). */
export function toConnectError(err: unknown): ConnectError {
  if (err instanceof ConnectError) return err;
  if (!(err instanceof BangerError)) return new ConnectError(err instanceof Error ? err.message : String(err), Code.Internal);
  if (isUnknownUser(err)) return new ConnectError(err.message, Code.Unauthenticated);
  return new ConnectError(err.message, CONNECT_CODES.get(err.code) ?? Code.Internal);
}

const CONNECT_CODES = new Map<ErrorCode, Code>([
  [ErrorCode.NotFound, Code.NotFound],
  [ErrorCode.InvalidArgument, Code.InvalidArgument],
  [ErrorCode.InvalidParams, Code.InvalidArgument],
  [ErrorCode.AlreadyExists, Code.AlreadyExists],
  [ErrorCode.ResourceExhausted, Code.ResourceExhausted],
  // The VM is not running (stopped, paused) or its agent is gone: the sandbox is not there.
  [ErrorCode.InUse, Code.Unavailable],
  [ErrorCode.Unavailable, Code.Unavailable],
  [ErrorCode.Timeout, Code.DeadlineExceeded],
  [ErrorCode.Cancelled, Code.Canceled],
  [ErrorCode.MethodNotFound, Code.Unimplemented],
]);

/** The HTTP status and message of an error for /files (envd.yaml's: 400, 401, 404, 500, 507). */
export function toHttpError(err: unknown): { status: number; message: string } {
  const c = toConnectError(err);
  return { status: HTTP_STATUS.get(c.code) ?? 500, message: c.rawMessage };
}

const HTTP_STATUS = new Map<Code, number>([
  [Code.NotFound, 404],
  [Code.InvalidArgument, 400],
  [Code.Unauthenticated, 401],
  [Code.AlreadyExists, 409],
  [Code.ResourceExhausted, 507],
  // What E2B's proxy answers for a sandbox that is not running: the SDK says so.
  [Code.Unavailable, 502],
  [Code.DeadlineExceeded, 504],
  [Code.Canceled, 499],
]);
