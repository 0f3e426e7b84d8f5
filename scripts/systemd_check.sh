#!/usr/bin/env bash
# Run systemd/edge-agent.service under a real systemd: a Debian 12 virtual machine (the
# base of 64-bit Raspberry Pi OS; systemd 252) in qemu, set up as the README's "Run it as
# a service" section says, with the simulator as the source and Mosquitto as the broker.
# Checks, each printed as ok/FAIL:
#   - check-wiring reads the source and says the wiring is right;
#   - the first start waits for READY=1 (kernels compiled into the CacheDirectory), the
#     status line shows the counters, the daemon runs as its own user in dialout;
#   - `edge-agent trend` and `alerts`, as root, read the service's event store and leave
#     its files the service's;
#   - secrets from /etc/edge-agent/edge-agent.env reach it; summaries reach the broker;
#   - a reload reads the configuration again in the same process; a restart loads the
#     compiled kernels; a stopped (hung) daemon is restarted by the watchdog, a killed
#     one by Restart=; a stop is clean and says "offline";
#   - a configuration error (exit 78) is not restarted;
#   - two motors' units (systemd/edge-agent@.service) started at once on an empty cache:
#     one compiles the kernels, the other waits and loads them, both run as the same user
#     with a store of their own, publish under their motor's name, and `edge-agent alerts`
#     and `trend` read every store;
#   - a third unit with one of their configurations copied as it was: each of the two
#     names the other (this computer, its pid) in its journal and status, and on /event;
#   - the system clock set 3 days forward (NTP at a Raspberry Pi's boot), then back: the
#     daemon says so in its journal and on /event, and its summaries follow the clock;
#   - a stop during a first start's compile returns at once, cleanly, the compile given up.
#
#   sudo scripts/systemd_check.sh [DIR]     # DIR: the VM's files, default /tmp/edge-agent-vm
#
# Needs root, Debian's servers and a package index for pip (for the wheels, made here and
# handed to the VM, which has no network). Uses KVM when the CPU offers vmx/svm, else
# qemu's software emulation: then about 50 minutes on 2 cores, and the times printed are
# the emulator's, not a real machine's. The Debian system in DIR/rootfs is kept for
# another run; each run boots a fresh disk made from it. Exit 0 when every check passes.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
DIR=${1:-/tmp/edge-agent-vm}
ROOTFS=$DIR/rootfs
SHARE=$DIR/share
PY=${PYTHON:-python3}
log() { echo "[systemd_check $(date +%T)] $*" >&2; }

missing=()
command -v qemu-system-x86_64 >/dev/null || missing+=(qemu-system-x86)
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v mke2fs >/dev/null || missing+=(e2fsprogs)
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
mkdir -p "$DIR"

# --- the Debian system, once ------------------------------------------------------------
if [ ! -f "$DIR/.rootfs-done" ]; then
    log "debootstrap Debian 12 into $ROOTFS (a few minutes)"
    rm -rf "$ROOTFS"
    debootstrap --arch=amd64 --variant=minbase \
        --include=systemd,systemd-sysv,udev,kmod,dbus,linux-image-amd64,initramfs-tools,python3,python3-venv,ca-certificates,procps,libnss-systemd,mosquitto,mosquitto-clients \
        bookworm "$ROOTFS" http://deb.debian.org/debian >"$DIR/debootstrap.log" 2>&1
    echo debvm >"$ROOTFS/etc/hostname"
    printf '127.0.0.1\tlocalhost debvm\n' >"$ROOTFS/etc/hosts"
    printf '/dev/vda / ext4 rw 0 1\nhost /mnt/host 9p trans=virtio,version=9p2000.L,msize=262144,nofail 0 0\n' \
        >"$ROOTFS/etc/fstab"
    mkdir -p "$ROOTFS/mnt/host"
    printf '%s\n' virtio_pci virtio_blk ext4 9pnet 9pnet_virtio 9p \
        >>"$ROOTFS/etc/initramfs-tools/modules"
    # At boot: run the host's run.sh, keep its output and exit code in the share, power off.
    # Type=exec, so that the system reaches "running" while run.sh runs.
    cat >"$ROOTFS/etc/systemd/system/check-runner.service" <<'EOF'
[Unit]
Description=Run /mnt/host/run.sh, then power off
After=multi-user.target
RequiresMountsFor=/mnt/host

[Service]
Type=exec
WorkingDirectory=/root
ExecStart=/bin/bash -c 'bash /mnt/host/run.sh </dev/null >/mnt/host/out.log 2>&1; echo $? >/mnt/host/rc; sync; systemctl poweroff --no-block'
TimeoutStartSec=infinity

[Install]
WantedBy=multi-user.target
EOF
    for d in proc sys dev; do mount --bind /$d "$ROOTFS/$d"; done
    trap 'for d in dev sys proc; do umount -l "$ROOTFS/$d" 2>/dev/null || true; done' EXIT
    chroot "$ROOTFS" systemctl enable check-runner.service >/dev/null 2>&1
    chroot "$ROOTFS" passwd -d root >/dev/null
    chroot "$ROOTFS" update-initramfs -u -k all >"$DIR/initramfs.log" 2>&1
    chroot "$ROOTFS" apt-get clean
    for d in dev sys proc; do umount -l "$ROOTFS/$d"; done
    trap - EXIT
    touch "$DIR/.rootfs-done"
fi
KERNEL=$(ls -1 "$ROOTFS"/boot/vmlinuz-* | sort -V | tail -1)
INITRD=$ROOTFS/boot/initrd.img-${KERNEL##*/vmlinuz-}

# --- what the VM is given: the wheels, the repository's systemd/ files, the checks ---------
rm -rf "$SHARE" && mkdir -p "$SHARE/wheels"
log "building the wheels of edge-agent (HEAD) and its dependencies"
SRC=$(mktemp -d)
git -C "$REPO" archive HEAD | tar -x -C "$SRC"
"$PY" -m pip wheel -q -w "$SHARE/wheels" "$SRC"
cp "$SRC/systemd/edge-agent.service" "$SRC/systemd/edge-agent@.service" \
    "$SRC/systemd/edge-agent.toml" "$SHARE/"
rm -rf "$SRC"
cat >"$SHARE/run.sh" <<'EOF'
set -u
fails=0
ok() { echo "ok    $*"; }
fail() { echo "FAIL  $*"; fails=$((fails + 1)); }
check() { local what=$1; shift; if "$@"; then ok "$what"; else fail "$what"; fi; }
prop() { systemctl show -P "$1" edge-agent; }
wait_for() {  # wait_for SECONDS COMMAND...: until the command succeeds
    local end=$((SECONDS + $1)); shift
    until "$@"; do [ $SECONDS -ge $end ] && return 1; sleep 1; done
}
systemctl is-system-running --wait >/dev/null
echo "== $(systemctl --version | head -1), $(systemd-detect-virt)"

# As the README installs it (the wheels stand in for PyPI: the VM has no network).
python3 -m venv /opt/edge-agent
/opt/edge-agent/bin/pip install -q --no-index --find-links /mnt/host/wheels edge-agent
install -D -m 644 /mnt/host/edge-agent.toml /etc/edge-agent/edge-agent.toml
# No ADC here: the simulator is the source.
sed -i 's/^source = "serial"/source = "simulator"/' /etc/edge-agent/edge-agent.toml
install -m 600 /dev/null /etc/edge-agent/edge-agent.env
printf '%s\n' EDGE_AGENT_MQTT__URL=mqtt://127.0.0.1:1883 EDGE_AGENT_OUTPUT__ASSET=vm-motor \
    EDGE_AGENT_OUTPUT__SUMMARY_INTERVAL_S=5 >/etc/edge-agent/edge-agent.env
check "check-config accepts the configuration" sh -c \
    "/opt/edge-agent/bin/edge-agent check-config /etc/edge-agent/edge-agent.toml >/dev/null"
check "check-wiring on the (simulated) running motor says the wiring is right" sh -c \
    "/opt/edge-agent/bin/edge-agent check-wiring --config /etc/edge-agent/edge-agent.toml \
     --seconds 3 2>/dev/null | grep -q '^wiring OK'"
install -m 644 /mnt/host/edge-agent.service /etc/systemd/system/
systemctl daemon-reload
systemctl enable edge-agent 2>/dev/null
systemctl start mosquitto
mosquitto_sub -v -t 'edge-agent/#' >/root/mqtt.log 2>&1 &

echo "== first start (compiles the kernels)"
t=$SECONDS
check "systemctl start returns once the daemon is ready" systemctl start edge-agent
echo "   start took $((SECONDS - t)) s"
check "active" test "$(systemctl is-active edge-agent)" = active
echo "   status: $(prop StatusText)"
check "its status says what it reads" test "$(prop StatusText)" = "reading simulator"
pid=$(prop MainPID)
echo "   user: $(ps -o user= -p "$pid"); $(grep ^Groups: /proc/"$pid"/status)"
check "it runs as its own user" test "$(ps -o user= -p "$pid")" = edge-agent
check "in the dialout group" grep -Eq "^Groups:.*[[:space:]]$(getent group dialout | cut -d: -f3)([[:space:]]|\$)" \
    /proc/"$pid"/status
check "the compiled kernels are in the CacheDirectory" \
    test "$(find /var/cache/edge-agent/numba -name '*.nbi' | wc -l)" -gt 0
echo "   $(find /var/cache/edge-agent/numba -name '*.nbi' | wc -l) kernels cached"
check "and stamped as holding them all (the next start skips the compiling child)" \
    test -s /var/cache/edge-agent/numba/edge-agent-kernels.json
check "the status line counts windows" wait_for 60 \
    sh -c "systemctl show -P StatusText edge-agent | grep -q 'simulator: [1-9][0-9]* windows'"
echo "   status: $(prop StatusText)"
check "the event store is in the StateDirectory" test -s /var/lib/edge-agent/edge-agent.db
check "with 8 MB kept free beside it for a stop on a full disk" \
    test "$(stat -c %s /var/lib/edge-agent/edge-agent.db.reserve)" = 8388608
check "summaries reach the broker, under the asset named in edge-agent.env" \
    wait_for 60 grep -q '^edge-agent/site/vm-motor/summary ' /root/mqtt.log
check "edge-agent trend, as root, reads the service's store unasked" sh -c \
    "/opt/edge-agent/bin/edge-agent trend --every 1h | grep -Eq '^/var/lib/edge-agent/edge-agent.db: [12] spans? of summaries'"
check "edge-agent alerts reads it too (none raised on the healthy simulator)" sh -c \
    "/opt/edge-agent/bin/edge-agent alerts | grep -q '^/var/lib/edge-agent/edge-agent.db: 0 alerts, 0 open'"
check "and leaves every file there the service's" \
    sh -c "! find /var/lib/private/edge-agent -user root | grep -q ."
check "no window records in the journal" \
    sh -c "! journalctl -u edge-agent -o cat | grep -q '\"type\":\"window\"'"
check "no telemetry from onnxruntime (nothing about it in the journal)" \
    sh -c "! journalctl -u edge-agent -o cat | grep -qi telemetry"
echo "   memory: $(grep VmRSS /proc/"$(prop MainPID)"/status | tr -s ' \t' ' ') resident," \
    "$(( $(prop MemoryCurrent) / 1048576 )) MiB in the unit's cgroup (with page cache);" \
    "CPU so far: $(( $(prop CPUUsageNSec) / 1000000 )) ms"

echo "== reload (systemctl reload: SIGHUP)"
pid=$(prop MainPID)
sed -i 's/^raise_after = 3 /raise_after = 4 /' /etc/edge-agent/edge-agent.toml
check "systemctl reload" systemctl reload edge-agent
check "reads the configuration again" wait_for 30 \
    sh -c "journalctl -u edge-agent -o cat | grep -q 'reloaded: model '"
check "in the same process, still active" \
    test "$(prop MainPID):$(systemctl is-active edge-agent)" = "$pid:active"
journalctl -u edge-agent -o cat | grep 'reloaded: model ' | tail -1 | sed 's/^/   /'

echo "== restart (the kernels are cached now)"
t=$SECONDS
check "systemctl restart" systemctl restart edge-agent
echo "   restart took $((SECONDS - t)) s"
check "it loaded the kernels without compiling them in a child (once, at the first start)" \
    test "$(journalctl -u edge-agent -o cat | grep -c 'in a child process')" = 1

echo "== a hung daemon (SIGSTOP): the watchdog"
n=$(prop NRestarts)
kill -STOP "$(prop MainPID)"
check "restarted within 60 s" wait_for 60 sh -c "[ \$(systemctl show -P NRestarts edge-agent) -gt $n ]"
check "for a watchdog timeout" sh -c "journalctl -u edge-agent -o cat | grep -q 'Watchdog timeout'"
check "and ready again" wait_for 120 sh -c "[ \$(systemctl is-active edge-agent) = active ]"

echo "== a crash (SIGKILL): Restart=on-failure"
n=$(prop NRestarts)
kill -KILL "$(prop MainPID)"
check "restarted" wait_for 60 sh -c "[ \$(systemctl show -P NRestarts edge-agent) -gt $n ]"
check "and ready again" wait_for 120 sh -c "[ \$(systemctl is-active edge-agent) = active ]"

echo "== stop"
check "systemctl stop" systemctl stop edge-agent
check "the stop was clean (exit 0)" test "$(prop ExecMainStatus)" = 0
check "the retained status says offline" \
    sh -c "mosquitto_sub -t edge-agent/site/vm-motor/status -C 1 -W 5 | grep -q offline"
journalctl -u edge-agent -o cat | grep 'simulator:' | tail -1 | sed 's/^/   /'

echo "== a configuration error (exit 78) is not restarted"
echo EDGE_AGENT_MOTOR__POLE_PAIRS=0 >>/etc/edge-agent/edge-agent.env
systemctl start edge-agent 2>/dev/null
check "the start fails" test "$(systemctl is-active edge-agent)" = failed
check "with exit 78" test "$(prop ExecMainStatus)" = 78
sleep 15  # RestartSec=10s
# (A start by hand set NRestarts, systemd's count of its own restarts, back to 0.)
check "and it is not restarted" test "$(prop NRestarts):$(systemctl is-active edge-agent)" = 0:failed
journalctl -u edge-agent -o cat | grep 'error:' | tail -1 | sed 's/^/   /'

echo "== two motors: edge-agent@pump-1 and edge-agent@fan-2, started at once on an empty cache"
printf '%s\n' EDGE_AGENT_MQTT__URL=mqtt://127.0.0.1:1883 EDGE_AGENT_OUTPUT__SUMMARY_INTERVAL_S=5 \
    >/etc/edge-agent/edge-agent.env
systemctl disable edge-agent 2>/dev/null
systemctl reset-failed edge-agent
install -m 644 /mnt/host/edge-agent@.service /etc/systemd/system/
for m in pump-1 fan-2; do
    sed -e 's/^source = "serial"/source = "simulator"/' -e "s/^asset = \"motor\"/asset = \"$m\"/" \
        /mnt/host/edge-agent.toml >/etc/edge-agent/$m.toml
done
rm -rf /var/cache/private/edge-agent/numba  # as at a first boot
systemctl daemon-reload
systemctl enable edge-agent@pump-1 edge-agent@fan-2 2>/dev/null
t=$SECONDS
check "systemctl start of both returns once both are ready" \
    systemctl start edge-agent@pump-1 edge-agent@fan-2
echo "   start took $((SECONDS - t)) s"
check "both active" test "$(systemctl is-active edge-agent@pump-1 edge-agent@fan-2 | sort -u)" = active
check "one compiled the kernels in a child" \
    test "$(journalctl -u 'edge-agent@*' -o cat | grep -c 'in a child process')" = 1
check "the other waited for it, then loaded them" \
    test "$(journalctl -u 'edge-agent@*' -o cat | grep -c 'another edge-agent is compiling')" = 1
check "into the shared cache, stamped" test -s /var/cache/edge-agent/numba/edge-agent-kernels.json
users=$(for m in pump-1 fan-2; do ps -o user= -p "$(systemctl show -P MainPID edge-agent@$m)"; done | sort -u)
check "both run as the same user, edge-agent" test "$users" = edge-agent
check "each has its own event store" \
    test -s /var/lib/edge-agent-pump-1/edge-agent.db -a -s /var/lib/edge-agent-fan-2/edge-agent.db
check "summaries of both motors reach the broker" wait_for 60 sh -c \
    "grep -q '^edge-agent/site/pump-1/summary ' /root/mqtt.log && grep -q '^edge-agent/site/fan-2/summary ' /root/mqtt.log"
check "edge-agent trend shows a table of each" sh -c \
    "/opt/edge-agent/bin/edge-agent trend --every 1h | grep -q '^/var/lib/edge-agent-pump-1/edge-agent.db: [12] spans\? of summaries of site/pump-1' \
     && /opt/edge-agent/bin/edge-agent trend --every 1h | grep -q '^/var/lib/edge-agent-fan-2/edge-agent.db: [12] spans\? of summaries of site/fan-2'"
check "edge-agent alerts reads every store on the computer" sh -c \
    "/opt/edge-agent/bin/edge-agent alerts | grep -q '^/var/lib/edge-agent/edge-agent.db, /var/lib/edge-agent-fan-2/edge-agent.db, /var/lib/edge-agent-pump-1/edge-agent.db: 0 alerts'"
echo "== a third unit, edge-agent@copy, with pump-1's configuration copied as it was"
sed -e 's/^source = "serial"/source = "simulator"/' -e 's/^asset = "motor"/asset = "pump-1"/' \
    /mnt/host/edge-agent.toml >/etc/edge-agent/copy.toml
check "it starts" systemctl start edge-agent@copy
pump=$(systemctl show -P MainPID edge-agent@pump-1) copy=$(systemctl show -P MainPID edge-agent@copy)
check "pump-1's journal names the copy (this computer, its pid)" wait_for 120 sh -c \
    "journalctl -u edge-agent@pump-1 -o cat | grep -q 'another agent publishes as this asset: edge-agent.* on this computer (pid $copy)'"
check "and the copy's names pump-1" wait_for 120 sh -c \
    "journalctl -u edge-agent@copy -o cat | grep -q 'another agent publishes as this asset: edge-agent.* on this computer (pid $pump)'"
check "systemctl status of each says so" wait_for 30 sh -c \
    "systemctl show -P StatusText edge-agent@copy | grep -q 'ANOTHER AGENT PUBLISHES AS THIS ASSET' \
     && systemctl show -P StatusText edge-agent@pump-1 | grep -q 'ANOTHER AGENT PUBLISHES AS THIS ASSET'"
check "the plant hears of it on /event" wait_for 60 \
    grep -q '^edge-agent/site/pump-1/event .*asset_conflict' /root/mqtt.log
check "both keep running" test "$(systemctl is-active edge-agent@pump-1 edge-agent@copy | sort -u)" = active
systemctl stop edge-agent@copy
journalctl -u edge-agent@copy -o cat | grep 'another agent' | head -1 | sed 's/^/   /'

echo "== the system clock set 3 days forward (NTP at a Raspberry Pi's boot), then back"
last_summary_off() {  # how far pump-1's last summary's time is from the clock, s
    python3 -c "import json, time
lines = [l for l in open('/root/mqtt.log') if l.startswith('edge-agent/site/pump-1/summary ')]
print(round(json.loads(lines[-1].split(' ', 1)[1])['ts'] - time.time()))"
}
date -s '+3 days' >/dev/null
check "pump-1's journal says so" wait_for 30 sh -c \
    "journalctl -u edge-agent@pump-1 -o cat | grep -q 'the system clock was set forward by 3.0 d'"
check "the plant hears of it on /event" wait_for 30 \
    grep -q '^edge-agent/site/pump-1/event .*"event":"clock"' /root/mqtt.log
sleep 12  # summaries every 5 s
summary_is_current() { [ "$(last_summary_off)" -gt -30 ]; }
check "its summaries carry the clock's new time" summary_is_current
echo "   the last summary's time less the clock's: $(last_summary_off) s"
date -s '-3 days' >/dev/null
check "set back, it follows again" wait_for 30 sh -c \
    "journalctl -u edge-agent@pump-1 -o cat | grep -q 'the system clock was set back by 3.0 d'"
journalctl -u edge-agent@pump-1 -o cat | grep 'system clock' | sed 's/^/   /'
check "both stop cleanly" systemctl stop edge-agent@pump-1 edge-agent@fan-2
# (systemctl show puts an empty line between the units.)
check "with exit 0" \
    test "$(systemctl show -P ExecMainStatus edge-agent@pump-1 edge-agent@fan-2 | grep . | sort -u)" = 0
journalctl -u 'edge-agent@*' -o cat | grep -E 'child process|another edge-agent' | sed 's/^/   /'

echo "== a stop during a first start's compile (a restart, a shutdown at the first boot)"
rm -rf /var/cache/private/edge-agent/numba
systemctl start --no-block edge-agent@pump-1
check "pump-1 compiles the kernels" wait_for 300 sh -c \
    "systemctl show -P StatusText edge-agent@pump-1 | grep -q '^compiling the analysis kernels'"
sleep 5
t=$SECONDS
check "systemctl stop returns" systemctl stop edge-agent@pump-1
echo "   stop took $((SECONDS - t)) s (systemd kills after TimeoutStopSec=30s)"
check "a clean stop, not a kill" test \
    "$(systemctl show -P Result edge-agent@pump-1):$(systemctl show -P ExecMainStatus edge-agent@pump-1)" = success:0
check "the compile given up, not done by the daemon instead" sh -c \
    "journalctl -u edge-agent@pump-1 -o cat | grep -q 'stopped while compiling the analysis kernels' \
     && ! journalctl -u edge-agent@pump-1 -o cat | grep -q 'compiling here'"

echo "== systemd-analyze security edge-agent"
systemd-analyze security edge-agent | tail -1
echo "== journal"
journalctl -u edge-agent -o short-monotonic --no-pager | tail -40
echo "== $fails failed"
[ "$fails" = 0 ]
EOF

# --- a fresh disk from the system, and the boot ---------------------------------------------
log "making the disk"
rm -f "$DIR/disk.img" && truncate -s 8G "$DIR/disk.img"
mke2fs -q -F -t ext4 -d "$ROOTFS" "$DIR/disk.img"
# KVM only with real hardware virtualisation: some sandboxes' /dev/kvm (kvm_pvm) cannot
# run a stock Debian kernel.
if [ -r /dev/kvm ] && grep -qwE 'vmx|svm' /proc/cpuinfo && [ ! -d /sys/module/kvm_pvm ]; then
    accel=(-enable-kvm -cpu host)
else
    accel=(-accel tcg,thread=multi,tb-size=512 -cpu max)
fi
log "booting (${accel[*]}); console in $DIR/console.log, progress in $SHARE/out.log"
timeout --kill-after=15 3600 qemu-system-x86_64 "${accel[@]}" -m 4096 -smp 2 \
    -display none -monitor none -serial "file:$DIR/console.log" -no-reboot -nic none \
    -kernel "$KERNEL" -initrd "$INITRD" -append "root=/dev/vda rw console=ttyS0 panic=-1" \
    -drive "file=$DIR/disk.img,if=virtio,format=raw,cache=writeback" \
    -virtfs "local,path=$SHARE,mount_tag=host,security_model=none" </dev/null || true
cat "$SHARE/out.log"
[ -s "$SHARE/rc" ] || { log "the VM wrote no exit code: see $DIR/console.log"; exit 1; }
exit "$(tr -dc 0-9 <"$SHARE/rc")"
