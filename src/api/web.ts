// The dashboard's HTTP contract (webui/): what each /api route answers, the live VM list it
// pushes over SSE, the tasks long calls run as, and the terminal WebSocket's text messages.
// Routes answer a daemon method's result unchanged unless WebRoutes says otherwise; the
// server (webui/api.ts) and the page (webui/app/api.ts) are both typed against this map, and
// webui/openapi.json documents it.
import type { ErrorJson } from "../util/errors.ts";
import type { ProgressEvent } from "../util/progress.ts";
import type { AvailableImage, AvailableKernel, ConfiguredDefaults, ImageView, KernelView, Removed } from "./images.ts";
import type { MethodName, ResultOf } from "./methods.ts";
import type { ListeningPort, SessionView, VmState, VmStats, VmView } from "./vm.ts";
import type { DaemonStatus, OperationView } from "./daemon.ts";
import type { SnapshotView } from "./snapshots.ts";
import type { PoolList } from "./pools.ts";

/** A running VM's use, as the live list shows it (derived from vm.stats). */
export interface DashboardVmStats {
  /** Share of the VM's CPUs busy since the previous sample, 0-100; null on the first sample. */
  cpuPercent: number | null;
  memUsedBytes: number;
  memTotalBytes: number;
  uptimeSeconds: number;
  vmmRssBytes: number | null;
}

/** A VM in the live list (GET /api/vms?stats=1, the `vms` SSE event): a subset of VmView, with its use. */
export interface DashboardVm extends Pick<VmView, "name" | "image" | "kernel" | "vmm" | "cpus" | "memoryBytes" | "ip" | "error" | "stateReason" | "createdAt" | "startedAt"> {
  state: VmState;
  stats: DashboardVmStats | null;
}

/** A long call started from the page (POST /api/vms, pulls), followed over SSE; R is its method's result. */
export interface TaskView<R = unknown> {
  id: string;
  method: string;
  target: string;
  state: "running" | "done" | "failed";
  progress: ProgressEvent | null;
  /** The method's result once done. */
  result?: R;
  error?: ErrorJson;
  startedAt: string;
  finishedAt: string | null;
}

/** GET /api/vms/:name/console: the last bytes of the serial console. */
export interface ConsoleTail {
  bytes: number;
  text: string;
}

/** Browser → server text frames on the terminal WebSocket (binary frames are keystrokes). */
export type TerminalControl = { t: "resize"; rows: number; cols: number } | { t: "signal"; name: string };

/** What a terminal WebSocket runs: a login shell, or attaching to a detached session. */
export type TerminalMethod = Extract<MethodName, "vm.exec" | "session.attach">;

/** Server → browser text frames: one ends the call, then the socket closes (binary frames are output). */
export type TerminalMessage = { t: "exit"; status: ResultOf<TerminalMethod> } | ({ t: "error" } & ErrorJson);

/** Every JSON route the page calls: "METHOD /path/:param" → what it answers. */
export interface WebRoutes {
  "GET /api/daemon": DaemonStatus;
  "GET /api/vms": VmView[] | DashboardVm[];
  "POST /api/vms": TaskView<ResultOf<"vm.create">>;
  "GET /api/vms/:name": VmView;
  "GET /api/vms/:name/stats": VmStats;
  "GET /api/vms/:name/ports": ListeningPort[];
  "GET /api/vms/:name/sessions": SessionView[];
  "GET /api/vms/:name/console": ConsoleTail;
  "POST /api/vms/:name/start": ResultOf<"vm.start">;
  "POST /api/vms/:name/stop": ResultOf<"vm.stop">;
  "POST /api/vms/:name/kill": ResultOf<"vm.kill">;
  "POST /api/vms/:name/pause": ResultOf<"vm.pause">;
  "POST /api/vms/:name/resume": ResultOf<"vm.resume">;
  "DELETE /api/vms/:name": ResultOf<"vm.rm">;
  "GET /api/kernels": KernelView[];
  "GET /api/kernels/catalog": AvailableKernel[];
  "POST /api/kernels/pull": TaskView<ResultOf<"kernel.pull">>;
  "DELETE /api/kernels/:name": Removed;
  "GET /api/images": ImageView[];
  "GET /api/images/catalog": AvailableImage[];
  "POST /api/images/pull": TaskView<ResultOf<"image.pull">>;
  "DELETE /api/images/:name": Removed;
  "GET /api/snapshots": SnapshotView[];
  "GET /api/defaults": ConfiguredDefaults;
  "POST /api/defaults": ConfiguredDefaults;
  "GET /api/operations": OperationView[];
  "GET /api/sessions": SessionView[];
  "GET /api/pools": PoolList;
  "GET /api/tasks/:id": TaskView;
}

export type WebRoute = keyof WebRoutes;
