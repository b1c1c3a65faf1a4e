#!/usr/bin/env bash
# The main job, end to end on a fresh Debian 12 host: set up and build banger, check the
# host, make the default kernel (Debian's cloud kernel, through apt) and image (busybox),
# boot a real VM, run a command in it, and print what happened with the time of each phase.
# State goes to ./.demo-home unless BANGER_HOME is set; run it again and it reuses it.
set -euo pipefail
cd "$(dirname "$0")/.."
export BANGER_HOME="${BANGER_HOME:-$PWD/.demo-home}"
# The demo only runs uname in the guest: no VM networking, so the host's network (often a
# shared machine's) is never touched. Unset it to get bridge, NAT and .vm DNS (needs root).
export BANGER_NETWORK="${BANGER_NETWORK:-off}"
banger=bin/banger

t0=$(date +%s.%N)
phase() { printf '\n== %s\n' "$*"; }
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1fs", b - a }'; }

phase "setup (Debian packages, npm packages, build)"
s=$(date +%s.%N); bash scripts/setup.sh; echo "setup: $(since "$s")"

phase "banger doctor (state root: $BANGER_HOME)"
$banger doctor || { echo "demo: this host cannot boot VMs yet (see the FAIL lines above)"; exit 1; }

phase "default kernel: Debian's cloud kernel, imported from its package"
s=$(date +%s.%N)
kernel=$($banger config get default_kernel --json | node -e 'process.stdout.write(JSON.parse(require("fs").readFileSync(0,"utf8")).value ?? "")')
if [[ -z "$kernel" ]] || ! $banger kernel show "$kernel" >/dev/null 2>&1; then
  $banger kernel import --debian --flavor cloud --force
  kernel=$($banger kernel list --json | node -e 'const k=JSON.parse(require("fs").readFileSync(0,"utf8")).find(k=>k.distro==="debian"); process.stdout.write(k.name)')
  $banger config set default_kernel "$kernel"
fi
echo "kernel: $kernel ($(since "$s"))"

phase "default image: busybox, built from busybox-static"
s=$(date +%s.%N)
$banger image show busybox >/dev/null 2>&1 || $banger image build --preset busybox
$banger config set default_image busybox
echo "image: busybox ($(since "$s"))"

phase "boot a VM and run a command in it"
name="demo-$$"
s=$(date +%s.%N)
$banger vm create --name "$name"
boot=$(since "$s")
s=$(date +%s.%N)
out=$($banger vm exec "$name" -- uname -a)
exec_t=$(since "$s")
s=$(date +%s.%N)
$banger vm rm -f "$name" >/dev/null
rm_t=$(since "$s")

phase "what happened"
echo "guest said:  $out"
echo "kernel:      $kernel"
echo "image:       busybox"
echo "vm create:   $boot (disk clone, boot, agent ready)"
echo "vm exec:     $exec_t"
echo "vm rm:       $rm_t"
echo "total:       $(since "$t0")"
