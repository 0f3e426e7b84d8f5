#!/usr/bin/env bash
# Install edge-agent on Debian 12 arm64 (the base of 64-bit Raspberry Pi OS) under qemu, run
# the README's first command there, and compare its records with the same recording
# replayed on this machine: the same alerts, and features equal to float32 rounding.
#
#   sudo scripts/arm64_check.sh [ROOT]     # ROOT: the arm64 system, default /tmp/edge-agent-arm64
#
# Needs root, Debian's and PyPI's servers, binfmt_misc (qemu-user-static registers
# qemu-aarch64 there; in a container the host must allow it), and edge-agent installed for
# this machine's python3 (the README's test command does that; PYTHON names another). About 10 minutes on 2 cores;
# timings under emulation say nothing about a real Pi. The system is kept for another run
# (delete ROOT to start afresh). Exit 0 when the records agree, 1 when they do not.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
ROOT=${1:-/tmp/edge-agent-arm64}
PY=${PYTHON:-python3}

if ! command -v debootstrap >/dev/null || [ ! -e /usr/bin/qemu-aarch64-static ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-user-static debootstrap binfmt-support
fi
update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
if [ ! -x "$ROOT/usr/bin/python3" ]; then
    debootstrap --arch=arm64 --variant=minbase --include=python3,python3-venv,ca-certificates \
        bookworm "$ROOT" http://deb.debian.org/debian
fi
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
cp /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/ssl/certs/ca-certificates.crt"
mountpoint -q "$ROOT/proc" || mount -t proc proc "$ROOT/proc"
trap 'umount "$ROOT/proc" 2>/dev/null || true' EXIT
[ "$(chroot "$ROOT" uname -m)" = aarch64 ]

# The repository as committed (HEAD), installed as the README installs it: no pyFFTW.
rm -rf "$ROOT/root/edge-agent"
git -C "$REPO" archive --prefix=edge-agent/ HEAD | tar -x -C "$ROOT/root"
chroot "$ROOT" /bin/bash -euc '
    cd /root/edge-agent
    python3 -m venv .venv
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt .venv/bin/pip install -q .
    .venv/bin/edge-agent simulate --fault broken-bar --severity 40 --duration 30 -o bb.csv
    .venv/bin/edge-agent replay bb.csv --out ev.jsonl
'

# The same recording here, with the FFT the arm64 install has (scipy's).
HERE=$(mktemp -d)
EDGE_AGENT_FFT=scipy "$PY" -m edge_agent replay "$ROOT/root/edge-agent/bb.csv" \
    --out "$HERE/ev.jsonl"
"$PY" - "$HERE/ev.jsonl" "$ROOT/root/edge-agent/ev.jsonl" <<'EOF'
import json
import math
import sys

here, arm = ([json.loads(line) for line in open(p)] for p in sys.argv[1:3])
problems = []
if [r["type"] for r in here] != [r["type"] for r in arm]:
    problems.append("the records differ in number or type")
alerts = [[(r["fault"], r["severity"]) for r in rs if r["type"] == "alert"] for rs in (here, arm)]
if alerts[0] != alerts[1]:
    problems.append(f"alerts differ: {alerts[0]} here, {alerts[1]} on arm64")
worst = {}
for a, b in zip(here, arm):
    for k, va in (a.get("features") or {}).items():
        vb = b["features"].get(k)
        if (va is None) != (vb is None):
            problems.append(f"{k}: {va} here, {vb} on arm64")
        elif va is not None:
            # dB to 0.01; other features to 1e-4 of their size (first differences of
            # near-equal values to 1e-6 absolute).
            tol = 0.01 if "_db" in k else max(1e-4 * abs(va), 1e-6)
            worst[k] = max(worst.get(k, 0.0), abs(va - vb))
            if not math.isclose(va, vb, rel_tol=0, abs_tol=tol):
                problems.append(f"{k}: {va} here, {vb} on arm64")
db = max((v, k) for k, v in worst.items() if "_db" in k)
print(f"{len(arm)} records; alerts {alerts[1]}; largest difference in dB: {db[0]:.2g} ({db[1]})")
for p in problems[:20]:
    print("MISMATCH", p)
sys.exit(1 if problems else 0)
EOF
