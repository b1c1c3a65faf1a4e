// Numbered schema migrations, applied in order at daemon start. PRAGMA user_version holds
// the number of the last one applied. Never edit a migration that has shipped: add one.

export const MIGRATIONS: readonly string[] = [
  // 1: the first schema.
  `
  CREATE TABLE kernels (
    name            TEXT PRIMARY KEY,
    source          TEXT NOT NULL,
    kernel_version  TEXT NOT NULL DEFAULT '',
    distro          TEXT NOT NULL DEFAULT '',
    arch            TEXT NOT NULL DEFAULT 'x86_64',
    vmlinux_sha256  TEXT NOT NULL,
    has_initrd      INTEGER NOT NULL DEFAULT 0,
    modules         TEXT NOT NULL DEFAULT '[]',
    size_bytes      INTEGER NOT NULL DEFAULT 0,
    created_at      TEXT NOT NULL
  ) STRICT;

  CREATE TABLE images (
    name        TEXT PRIMARY KEY,
    source      TEXT NOT NULL,
    digest      TEXT NOT NULL DEFAULT '',
    kernel_ref  TEXT,
    distro      TEXT NOT NULL DEFAULT '',
    arch        TEXT NOT NULL DEFAULT 'x86_64',
    size_bytes  INTEGER NOT NULL DEFAULT 0,
    config      TEXT NOT NULL DEFAULT '{}',
    created_at  TEXT NOT NULL
  ) STRICT;

  CREATE TABLE vms (
    name        TEXT PRIMARY KEY,
    id          TEXT NOT NULL UNIQUE,
    state       TEXT NOT NULL CHECK (state IN ('creating','stopped','starting','running','stopping','error')),
    image       TEXT NOT NULL,
    kernel      TEXT NOT NULL,
    vmm         TEXT NOT NULL,
    cpus        INTEGER NOT NULL,
    memory_mib  INTEGER NOT NULL,
    disk_bytes  INTEGER NOT NULL DEFAULT 0,
    pid         INTEGER,
    ip          TEXT,
    error       TEXT,
    config      TEXT NOT NULL DEFAULT '{}',
    created_at  TEXT NOT NULL,
    started_at  TEXT
  ) STRICT;

  CREATE TABLE sessions (
    vm          TEXT NOT NULL REFERENCES vms(name) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    command     TEXT NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('running','exited','lost')),
    exit_code   INTEGER,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (vm, name)
  ) STRICT;

  CREATE TABLE operations (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    kind         TEXT NOT NULL,
    target       TEXT NOT NULL DEFAULT '',
    state        TEXT NOT NULL CHECK (state IN ('running','succeeded','failed','cancelled')),
    error        TEXT,
    started_at   TEXT NOT NULL,
    finished_at  TEXT
  ) STRICT;
  CREATE INDEX operations_started ON operations(started_at);
  `,
  // 2: networking. Each VM's egress policy, peer flag and current tap (the tap is kept so a
  // daemon restart can tell a running VM's tap from a leftover); daemon-wide settings such
  // as the bridge subnet chosen on first use (guest addresses live inside it).
  `
  ALTER TABLE vms ADD COLUMN net TEXT NOT NULL DEFAULT 'full' CHECK (net IN ('full','none','public'));
  ALTER TABLE vms ADD COLUMN net_peer INTEGER NOT NULL DEFAULT 0;
  ALTER TABLE vms ADD COLUMN tap TEXT;

  CREATE TABLE settings (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
  ) STRICT;
  `,
  // 3: VMs that end or stop on their own. New states: `crashed` (the VMM died: killed, a
  // guest panic, a failed exit), `paused` (the VMM paused the guest, e.g. on a host disk
  // full) and `removing` (an rm in progress: a daemon killed half-way finishes it at start);
  // `state_reason` says why the VM is in its state. SQLite cannot change a CHECK in place:
  // the table is rebuilt (Store.migrate turns foreign keys off around it, so the sessions
  // that reference vms survive the DROP).
  `
  CREATE TABLE vms_new (
    name          TEXT PRIMARY KEY,
    id            TEXT NOT NULL UNIQUE,
    state         TEXT NOT NULL CHECK (state IN ('creating','stopped','starting','running','stopping','error','crashed','paused','removing')),
    image         TEXT NOT NULL,
    kernel        TEXT NOT NULL,
    vmm           TEXT NOT NULL,
    cpus          INTEGER NOT NULL,
    memory_mib    INTEGER NOT NULL,
    disk_bytes    INTEGER NOT NULL DEFAULT 0,
    pid           INTEGER,
    ip            TEXT,
    error         TEXT,
    config        TEXT NOT NULL DEFAULT '{}',
    created_at    TEXT NOT NULL,
    started_at    TEXT,
    net           TEXT NOT NULL DEFAULT 'full' CHECK (net IN ('full','none','public')),
    net_peer      INTEGER NOT NULL DEFAULT 0,
    tap           TEXT,
    state_reason  TEXT
  ) STRICT;
  INSERT INTO vms_new (name, id, state, image, kernel, vmm, cpus, memory_mib, disk_bytes, pid, ip, error, config, created_at, started_at, net, net_peer, tap)
    SELECT name, id, state, image, kernel, vmm, cpus, memory_mib, disk_bytes, pid, ip, error, config, created_at, started_at, net, net_peer, tap FROM vms;
  DROP TABLE vms;
  ALTER TABLE vms_new RENAME TO vms;
  `,
  // 4: snapshots. A snapshot is a running VM's memory, device state and disk, kept under
  // <root>/snapshots/<name> (config's snapshotDir); the row records what it was taken from
  // (the VM's machine: image, kernel, VMM, size, NIC) and the size of each file and the
  // sha256 of the device state and the disk copy, checked before a restore. `internal` marks
  // a fork's base (removed with its last child). `workspace` (JSON): the VM's workspace slot copy
  // and workspace record, carried to restored VMs. vms.snapshot: the snapshot a VM was restored from.
  `
  CREATE TABLE snapshots (
    name            TEXT PRIMARY KEY,
    source_vm       TEXT NOT NULL,
    image           TEXT NOT NULL,
    kernel          TEXT NOT NULL,
    vmm             TEXT NOT NULL,
    cpus            INTEGER NOT NULL,
    memory_bytes    INTEGER NOT NULL,
    net             TEXT NOT NULL CHECK (net IN ('full','none','public')),
    net_peer        INTEGER NOT NULL DEFAULT 0,
    has_nic         INTEGER NOT NULL DEFAULT 0,
    disk_file       TEXT NOT NULL,
    disk_format     TEXT NOT NULL CHECK (disk_format IN ('raw','qcow2')),
    state_bytes     INTEGER NOT NULL,
    memory_file_bytes INTEGER NOT NULL,
    disk_bytes      INTEGER NOT NULL,
    state_sha256    TEXT NOT NULL,
    disk_sha256     TEXT NOT NULL,
    internal        INTEGER NOT NULL DEFAULT 0,
    pause_ms        INTEGER NOT NULL DEFAULT 0,
    workspace       TEXT,
    created_at      TEXT NOT NULL
  ) STRICT;
  ALTER TABLE vms ADD COLUMN snapshot TEXT;
  `,
  // 5: warm pools. A pool is an image's wish for N ready VMs of one spec (JSON: kernel, cpus,
  // memoryBytes, net, netPeer); its members are ordinary VM rows whose `pool` names the image (NULL for every other VM),
  // so reconciliation, networking and cleanup treat them as the VMs they are.
  `
  CREATE TABLE pools (
    image       TEXT PRIMARY KEY,
    size        INTEGER NOT NULL CHECK (size >= 0),
    spec        TEXT NOT NULL DEFAULT '{}',
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
  ) STRICT;
  ALTER TABLE vms ADD COLUMN pool TEXT;
  CREATE INDEX vms_pool ON vms(pool) WHERE pool IS NOT NULL;
  `,
  // 6: sandboxes (the E2B-compatible API's). A sandbox is a VM (vm: its row, removed with it)
  // with what the API keeps beside it: the template it was asked for, metadata and envVars
  // (JSON), the access token its sandbox plane checks (NULL: not secure), when it expires
  // (end_at: removed then, or paused when auto_pause) and when it started.
  `
  CREATE TABLE sandboxes (
    id            TEXT PRIMARY KEY,
    vm            TEXT NOT NULL UNIQUE REFERENCES vms(name) ON DELETE CASCADE ON UPDATE CASCADE,
    template      TEXT NOT NULL,
    metadata      TEXT NOT NULL DEFAULT '{}',
    env_vars      TEXT NOT NULL DEFAULT '{}',
    access_token  TEXT,
    end_at        TEXT NOT NULL,
    auto_pause    INTEGER NOT NULL DEFAULT 0,
    started_at    TEXT NOT NULL
  ) STRICT;
  CREATE INDEX sandboxes_end_at ON sandboxes(end_at);
  `,
];
