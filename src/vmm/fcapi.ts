// A client for Firecracker's REST API over its Unix socket. micro-http (Firecracker's HTTP
// server) is strict: bodies are read by Content-Length only, Content-Type and Accept must
// be exactly application/json, and errors come back as 400 {"fault_message": "..."}.
import { request } from "node:http";
import { BangerError, ErrorCode } from "../util/errors.ts";

const MAX_RESPONSE = 256 * 1024;
const DEFAULT_TIMEOUT_MS = 5000;

export interface FcResponse {
  status: number;
  body: unknown;
}

/** Sends one request; resolves with any status (see fcCall for "2xx or throw"). */
export function fcRequest(socketPath: string, method: string, path: string, body?: unknown, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<FcResponse> {
  const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
  const headers: Record<string, string | number> = { Accept: "application/json" };
  if (payload) {
    headers["Content-Type"] = "application/json";
    headers["Content-Length"] = payload.length;
  }
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, method, path, headers, agent: false, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on("data", (b: Buffer) => {
        size += b.length;
        if (size > MAX_RESPONSE) req.destroy(new Error("Firecracker response too large"));
        else chunks.push(b);
      });
      res.on("end", () => {
        const text = Buffer.concat(chunks).toString("utf8");
        let parsed: unknown = text;
        try {
          parsed = text ? JSON.parse(text) : undefined;
        } catch {
          // Plain-text bodies (micro-http's own 500s) stay strings.
        }
        resolve({ status: res.statusCode ?? 0, body: parsed });
      });
      res.on("error", reject);
    });
    req.on("timeout", () => req.destroy(new BangerError(ErrorCode.Timeout, `Firecracker API ${method} ${path} got no answer in ${timeoutMs} ms`)));
    req.on("error", reject);
    req.end(payload);
  });
}

/** Sends one request and throws a BangerError carrying Firecracker's fault_message unless 2xx. */
export async function fcCall<T = unknown>(socketPath: string, method: string, path: string, body?: unknown, timeoutMs?: number): Promise<T> {
  const res = await fcRequest(socketPath, method, path, body, timeoutMs);
  if (res.status >= 200 && res.status < 300) return res.body as T;
  throw new BangerError(ErrorCode.Failed, `Firecracker rejected ${method} ${path} (${res.status}): ${faultMessage(res.body)}`, "see the VM's vmm.log and fc.log");
}

function faultMessage(body: unknown): string {
  if (body && typeof body === "object") {
    const b = body as { fault_message?: unknown; error?: unknown };
    // Errors are shown as one line; Firecracker's nested causes can span several.
    if (typeof b.fault_message === "string") return b.fault_message.replace(/\s*\n\s*/g, " ").trim();
    if (typeof b.error === "string") return b.error.split("\n")[0] ?? "";
  }
  return typeof body === "string" ? body.slice(0, 200) : "no details";
}
