// Test support, run as a program: a stand-in for the `firecracker` binary, which does not
// exist on this host (it needs KVM and no Debian package ships it). A mock by necessity.
// It serves the API on --api-sock, validates EVERY request against the official swagger
// (fcswagger.ts), answers like Firecracker (204, 200 + JSON, or 400 {"fault_message"}),
// enforces pre-boot/post-boot rules, binds the vsock UDS and speaks the hybrid-vsock
// handshake, and exits on SendCtrlAltDel like a guest reset would make Firecracker do.
// Every request is appended as one JSON line to $FC_FAKE_RECORD for the test to assert on.
import { appendFileSync } from "node:fs";
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from "node:http";
import { createServer as createNetServer, type Socket } from "node:net";
import { SwaggerValidator } from "./fcswagger.ts";

const args = process.argv.slice(2);
const argValue = (name: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const apiSock = argValue("--api-sock") ?? "/run/firecracker.socket";
const instanceId = argValue("--id") ?? "anonymous-instance";
const record = process.env.FC_FAKE_RECORD;
const validator = new SwaggerValidator(process.env.FC_FAKE_SWAGGER ?? "");
/** Set to make the "guest" ignore Ctrl+Alt+Del (to exercise the driver's kill fallback). */
const ignoreCtrlAltDel = process.env.FC_FAKE_IGNORE_CAD === "1";

const PRE_BOOT_ONLY = new Set(["/boot-source", "/drives/{drive_id}", "/network-interfaces/{iface_id}", "/machine-config", "/vsock", "/logger", "/metrics"]);

let started = false;
let paused = false;
let bootSourceSet = false;
let vsockListening = false;

function log(entry: Record<string, unknown>): void {
  if (record) appendFileSync(record, `${JSON.stringify(entry)}\n`);
}

function reply(res: ServerResponse, status: number, body?: unknown): void {
  const payload = body === undefined ? "" : JSON.stringify(body);
  res.writeHead(status, {
    Server: "Firecracker API",
    "Content-Length": Buffer.byteLength(payload),
    ...(payload ? { "Content-Type": "application/json" } : {}),
  });
  res.end(payload);
}

const fault = (res: ServerResponse, message: string) => reply(res, 400, { fault_message: message });

function handle(req: IncomingMessage, res: ServerResponse, body: string): void {
  const method = req.method ?? "";
  const url = req.url ?? "";
  const check = validator.check(method, url, req.headers, body);
  log({ method, url, body: body ? JSON.parse(body) : undefined, headers: req.headers, problems: check.problems });
  if (check.problems.length > 0) return fault(res, check.problems.join("; "));
  const template = check.template ?? "";
  const parsed = body ? (JSON.parse(body) as Record<string, unknown>) : {};
  if (method === "GET" && template === "/") {
    return reply(res, 200, { id: instanceId, state: started ? (paused ? "Paused" : "Running") : "Not started", vmm_version: "0.0.0-fake", app_name: "Firecracker" });
  }
  if (method === "PUT" && PRE_BOOT_ONLY.has(template) && started) {
    return fault(res, "The requested operation is not supported after starting the microVM.");
  }
  if (template === "/boot-source") bootSourceSet = true;
  if (template === "/vsock") return bindVsock(String(parsed.uds_path), res);
  if (template === "/vm") {
    if (!started) return fault(res, "The requested operation is not supported before starting the microVM.");
    paused = parsed.state === "Paused";
  }
  if (template === "/actions") return action(String(parsed.action_type), res);
  reply(res, 204);
}

function action(type: string, res: ServerResponse): void {
  if (type === "InstanceStart") {
    if (started) return fault(res, "The requested operation is not supported after starting the microVM.");
    if (!bootSourceSet) return fault(res, "Cannot start microvm that was not configured: missing kernel configuration.");
    started = true;
    process.stdout.write("fake firecracker: guest booted\n");
    return reply(res, 204);
  }
  if (type === "SendCtrlAltDel") {
    if (!started) return fault(res, "The requested operation is not supported before starting the microVM.");
    reply(res, 204);
    if (!ignoreCtrlAltDel) setTimeout(() => process.exit(0), 50);
    return;
  }
  reply(res, 204);
}

function bindVsock(udsPath: string, res: ServerResponse): void {
  if (vsockListening) return reply(res, 204);
  let attempts = 0;
  const server = createNetServer((sock) => {
    // The first connection finds no listener in the "guest" yet: Firecracker closes it silently.
    if (attempts++ === 0) return void sock.destroy();
    serveVsock(sock);
  });
  server.once("error", (err) => fault(res, `Vsock Unix backend: ${err.message}`));
  server.listen(udsPath, () => {
    vsockListening = true;
    reply(res, 204);
  });
}

function serveVsock(sock: Socket): void {
  let handshaken = false;
  sock.on("data", (chunk) => {
    if (handshaken) return void sock.write(chunk);
    const text = chunk.toString("latin1");
    // Firecracker reads the command from a non-blocking socket: it must arrive in one piece.
    log({ vsock: text });
    if (!/^CONNECT \d+\n$/i.test(text) || text.trim().split(" ")[1] !== "52") return void sock.destroy();
    handshaken = true;
    // Guest bytes may share the read with the OK line.
    sock.write("OK 1073741824\nGUEST-HELLO\n");
  });
  sock.on("error", () => undefined);
}

const api = createHttpServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on("data", (b: Buffer) => chunks.push(b));
  req.on("end", () => handle(req, res, Buffer.concat(chunks).toString("utf8")));
});
api.listen(apiSock);
