// Package daemon is bangerd: the composition root that wires config, store, rpc and the
// owning modules together; the method table; operation records; per-name locks; and
// reconciliation at start (interrupted operations, VMs whose VMM died, VMs caught mid-create
// or mid-rm, half-done installs and leftover staging files: sweep.ts); installing kernels and
// images atomically (replace.ts); which kernel and image are used when none is named, the
// first one installed becoming the configured default (default-choice.ts); what VMs do on
// their own while it runs (vm-health.ts: ends, pauses, the free-space floor); where commands
// land in a VM when the caller does not say (landing.ts: the same user and directory for vm
// run, exec, shell, sessions, web terminal); snapshots of running VMs and the VMs restored or
// forked from them (snapshots.ts, restore.ts, fork.ts; their workspace disk: workspace-snapshot.ts;
// QEMUs started ahead for a snapshot's next restore: standby.ts); warm pools of VMs booted ahead that a matching
// create takes (pools.ts, its rules in pool-rules.ts); a running VM's files one path at a time
// through its agent (methods-fs.ts: vm.fs.*, what the E2B-compatible API's filesystem calls);
// the E2B API's sandboxes, VMs with an expiry it applies (sandboxes.ts, methods-sandboxes.ts),
// and starting that API (e2b/).
//
// It holds no business logic of its own in the method table (methods.ts composes the
// methods-*.ts tables, typed against api/'s method map): each method checks its params and
// calls one operation, and each operation calls the module that owns the work. It does not
// own the wire contract (api/: store rows become api's views in views.ts) nor finding or
// starting a daemon (launch/, the client side).
export { runDaemon } from "./server.ts";
export { KeyedLock, type DaemonContext } from "./context.ts";
