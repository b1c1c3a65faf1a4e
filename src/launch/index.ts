// Package launch is the client side of reaching bangerd: connect to the daemon for a root,
// starting it in the background when nothing answers, replacing an idle daemon of another
// build, and waiting for a stopping one to be gone. Its callers are the CLI and `bangerd`
// without --foreground (daemon/main.ts), which starts itself the same way: so it is a folder
// of its own, not cli/ (the daemon would import the CLI) nor daemon/ (the CLI would import
// the daemon).
//
// It does not own the daemon's life once started (daemon/server.ts), the socket protocol
// (rpc/) or the method contract (api/). Kept free of heavy imports (SQLite) so the CLI starts
// quickly.
export { buildId, connectOrStart, daemonEntry, startDaemon, waitSocketGone } from "./launch.ts";
