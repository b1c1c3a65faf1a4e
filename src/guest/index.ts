// Package guest owns the host side of the guest agent protocol (agent/PROTOCOL.md): the
// handshake (handshake.ts), one multiplexed stream of channels with credit-based flow control
// (mux.ts, channel.ts), and typed operations (client.ts: health, exec with PTY, files as tar,
// ports, stats, shutdown, tcp forward, detached sessions, user lookup, one path's filesystem
// operations (fs.ts: stat, list, mkdir, move, remove, read, write, watch), and reidentify: identity.ts,
// a restored or forked guest made a new machine). What the stats mean
// (memory used, CPU busy) is api/'s, as is the GuestStats shape it parses into. Words: a *connection* is one
// handshaken stream to the agent; a *session* is only a detached process in the guest
// (`session.start`, ...), which outlives connections.
// It also knows where the agent binaries are built. It does not start VMs or dial the
// agent's socket (vmm: dialUnix, dialFirecrackerVsock, handle.agentStream; the agent's vsock
// port and serial name live there too), pick cmdlines (daemon), or put the agent into
// images (rootfs). The guest is untrusted: frames are bounded, buffering is bounded by
// flow control, replies are validated, and every wait has a deadline. Whatever a guest
// sends, it is dropped or ends its own connection with one protocol-violation error; it
// never throws past the connection, and one connection holds at most MAX_BUFFERED_BYTES
// (64 channels x 2 x 256 KiB + one 1 MiB frame, ~33 MiB) of guest data (mux.ts says how).
export { connectAgent } from "./client.ts";
export { MAX_BUFFERED_BYTES, MAX_CHANNELS } from "./mux.ts";
export type { AgentClient, ConnectOptions, ExecHandle, ExecOptions, PutOptions, SessionAttachment, SessionOutput, SessionStartOptions } from "./client-types.ts";
export type { ReidentifyParams } from "./identity.ts";
export type { FsWatch, GuestFs } from "./fs.ts";
export type { AgentHealth, AgentInfo, ExitStatus, GuestStats, GuestUser, ListeningPort, SessionInfo } from "./messages.ts";
export { agentBinary, agentDir, buildAgent, hostAgentArch } from "./agentbin.ts";
export type { AgentArch } from "./agentbin.ts";
export { MAX_PAYLOAD, PROTO_VERSION } from "./frame.ts";
