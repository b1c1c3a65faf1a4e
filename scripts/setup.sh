#!/usr/bin/env bash
# Sets up banger on Debian 12 with Node.js >= 20: installs the Debian packages it uses,
# the npm packages, and builds the CLI, the daemon and the guest agent. Idempotent: a
# second run installs nothing and rebuilds only what changed.
#   bash scripts/setup.sh          what banger needs to run
#   bash scripts/setup.sh --test   plus what the tests and benchmarks need (registry, skopeo, ...)
set -euo pipefail
cd "$(dirname "$0")/.."

RUNTIME_PACKAGES=(qemu-system-x86 qemu-utils e2fsprogs zstd xz-utils lz4 kmod golang-go nftables iproute2 procps git ca-certificates openssh-client busybox-static dropbear-bin debootstrap)
TEST_PACKAGES=(docker-registry skopeo dnsutils curl openssl cpio hyperfine bsdutils umoci chromium iperf3)

packages=("${RUNTIME_PACKAGES[@]}")
if [[ "${1:-}" == "--test" ]]; then packages+=("${TEST_PACKAGES[@]}"); fi

as_root() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi; }

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if (( ${#missing[@]} > 0 )); then
  echo "setup: installing Debian packages: ${missing[*]}"
  as_root apt-get update -qq
  # iperf3 (benchmarks only) must not install a system service.
  echo "iperf3 iperf3/start_daemon boolean false" | as_root debconf-set-selections 2>/dev/null || true
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

node_major=$(node -p 'process.versions.node.split(".")[0]')
if (( node_major < 20 )); then echo "setup: banger needs Node.js >= 20 (found $(node --version))" >&2; exit 1; fi

# npm ci only when the lock file changed since the last install.
lock_sum=$(sha256sum package-lock.json | cut -d' ' -f1)
if [[ ! -f node_modules/.banger-lock-sum || "$(cat node_modules/.banger-lock-sum)" != "$lock_sum" ]]; then
  echo "setup: installing npm packages"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$lock_sum" > node_modules/.banger-lock-sum
fi

echo "setup: building"
node scripts/build.mjs
echo "setup: done ($(bin/banger --version))"
