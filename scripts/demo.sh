#!/usr/bin/env bash
# The main job, end to end on a fresh Debian 12 host: set up and build banger, then check
# the host. (Booting a VM from the default kernel and image joins this script as the VM
# lifecycle lands.) Uses ./demo-home as the state root unless BANGER_HOME is set.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export BANGER_HOME="${BANGER_HOME:-$PWD/.demo-home}"
echo "== banger doctor (state root: $BANGER_HOME)"
bin/banger doctor
