"""`edge-agent run` under systemd: readiness, status, reload and the watchdog over
$NOTIFY_SOCKET, and the unit file in systemd/.

systemd's side of sd_notify(3) is a Unix datagram socket; these tests bind a real one
and read what the daemon sends, as systemd would. The unit file is checked with
`systemd-analyze`, which reads it offline (no running systemd needed); `.ci/run` installs
it when missing. scripts/systemd_check.sh runs the unit under a real systemd in a VM.
"""

from __future__ import annotations

import fcntl
import io
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest

from edge_agent.acquisition.sources import make_source
from edge_agent.cli import _make_sink
from edge_agent.config import load_config
from edge_agent.service import run as run_service
from edge_agent.systemd import STATUS_INTERVAL_S, Notifier, watchdog_interval
from tests.mosquitto import wait_until

REPO = Path(__file__).resolve().parents[1]
UNIT = REPO / "systemd" / "edge-agent.service"
TEMPLATE = REPO / "systemd" / "edge-agent@.service"  # one of several motors
WAIT_S = 180.0  # a first compile of the kernels on a busy CI machine


class NotifySocket:
    """systemd's end: a bound datagram socket, and the messages received, with times."""

    def __init__(self, abstract: bool = False) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            name = f"edge-agent-test-{uuid.uuid4().hex}"
            self.sock.bind("\0" + name)
            self.address = "@" + name
        else:  # a short path: sun_path holds 108 bytes
            self._dir = tempfile.mkdtemp(prefix="sdn-")
            self.address = f"{self._dir}/notify"
            self.sock.bind(self.address)
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, dict[str, str]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            fields = dict(line.split("=", 1) for line in data.decode().split("\n") if line)
            self.messages.append((time.monotonic(), fields))

    def wait_for(self, predicate, timeout: float = WAIT_S, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        while not predicate(self):
            if time.monotonic() > deadline:
                pytest.fail(f"no {what} from the daemon in {timeout:g} s: {self.messages}")
            time.sleep(0.05)

    def having(self, key: str) -> list[tuple[float, dict[str, str]]]:
        return [(t, m) for t, m in self.messages if key in m]

    def pings_after_ready(self) -> int:
        ready = self.having("READY")
        if not ready:
            return 0
        return sum(1 for t, m in self.having("WATCHDOG") if t > ready[0][0])

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()
        if not self.address.startswith("@"):
            shutil.rmtree(self._dir, ignore_errors=True)


@pytest.fixture
def notify_socket():
    s = NotifySocket()
    yield s
    s.close()


def test_the_daemon_tells_systemd_it_is_ready_alive_and_stopping(notify_socket, tmp_path):
    out = tmp_path / "live.jsonl"
    env = {
        **os.environ,
        "NOTIFY_SOCKET": notify_socket.address,
        "WATCHDOG_USEC": "2000000",  # systemd's WatchdogSec=2s: a ping every second
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge_agent", "run", "--source", "simulator", "--no-model",
         "--out", str(out)],
        env=env, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        notify_socket.wait_for(lambda s: s.having("READY"), what="READY=1")
        # The watchdog keeps being fed while windows are analysed.
        notify_socket.wait_for(lambda s: s.pings_after_ready() >= 3, 60, "3 WATCHDOG=1")
        notify_socket.wait_for(lambda s: out.read_text().count("\n") >= 2, 60, "records")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    notify_socket.wait_for(lambda s: s.having("STOPPING"), 5, "STOPPING=1")

    first, ready = notify_socket.messages[0][1], notify_socket.having("READY")[0][1]
    # Before the kernels compile (minutes on a Pi) or load, `systemctl status` says so
    # (which of the two: test_a_first_start_compiles_apart_and_later_ones_only_load).
    assert first["STATUS"].split(" (")[0] in (
        "compiling the analysis kernels", "loading the analysis kernels from the cache"
    )  # fmt: skip
    assert ready == {"READY": "1", "STATUS": "reading simulator"}
    stopping = notify_socket.having("STOPPING")[-1][1]
    assert stopping["STATUS"].startswith("stopping; simulator: ")
    counters = " windows (0 anomalous, 0 flagged), 0 alerts raised; samples lost: 0"
    assert counters in stopping["STATUS"]
    assert notify_socket.messages[-1][1] is stopping  # nothing after STOPPING=1


def test_systemctl_reload_rereads_the_configuration_and_a_bad_one_changes_nothing(
    notify_socket, tmp_path
):
    """ExecReload sends SIGHUP: the daemon reads its configuration and model again, as the
    MQTT reload command does, and says RELOADING=1 then READY=1. A configuration broken
    meanwhile is refused, naming the file, and the analysis goes on."""
    cfg = tmp_path / "edge-agent.toml"
    cfg.write_text('[acquisition]\nsource = "simulator"\n[store]\npath = "store.db"\n')
    env = {**os.environ, "NOTIFY_SOCKET": notify_socket.address, "WATCHDOG_USEC": "2000000"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge_agent", "run", "--config", str(cfg), "--out", os.devnull],
        env=env, cwd=tmp_path, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip

    def reload(n: int) -> None:
        proc.send_signal(signal.SIGHUP)
        notify_socket.wait_for(lambda s: len(s.having("READY")) > n, 60, f"READY=1 #{n + 1}")

    try:
        notify_socket.wait_for(lambda s: s.having("READY"), what="READY=1")
        cfg.write_text(
            cfg.read_text()
            + "[motor]\npole_pairs = 1\nrated_rpm = 2880\n[alerts]\nraise_after = 5\n"
        )
        reload(1)
        cfg.write_text(cfg.read_text().replace("raise_after = 5", "raise_after = five"))
        reload(2)
        pings = notify_socket.pings_after_ready()
        notify_socket.wait_for(lambda s: s.pings_after_ready() > pings, 30, "WATCHDOG=1")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    # The default model, read again; the alert rules applied; the nameplate needs a restart.
    assert "reloaded: model " in err and "; changes to motor need a restart" in err
    assert "reload refused, going on as before: " in err and "edge-agent.toml" in err
    keys = [next(iter(m)) for _, m in notify_socket.messages if "RELOADING" in m or "READY" in m]
    assert keys == ["READY", "RELOADING", "READY", "RELOADING", "READY"]
    assert notify_socket.having("RELOADING")[0][1]["MONOTONIC_USEC"].isdigit()


def anon_memory_mb(pid: int) -> float:
    """Anonymous resident memory of a process (its heap: not the mapped libraries), MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no RssAnon in /proc/{pid}/status")


def test_a_first_start_compiles_apart_and_later_ones_only_load(tmp_path):
    """The first start after an install compiles the kernels. LLVM keeps what that took
    (about 170 MB) in the compiling process for good, so the daemon has a child process
    compile them and only loads them itself: it runs as lean as after a restart. Two
    daemons sharing the cache (two motors' units started at boot) compile once: the second
    waits for the first and loads what it compiled. Later starts, the cache stamped as
    holding every kernel, skip the child (1.7 s of 3.7 s to ready here). A stamp the cache
    belies (emptied under it) costs one start a compile of its own, said in the journal,
    and the next start compiles apart again."""
    cache = tmp_path / "numba"
    stamp = cache / "edge-agent-kernels.json"
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache), "EDGE_AGENT_FFT": "scipy"}

    def start(which: str, n: int = 1) -> list[tuple[float, list[str], str]]:
        """For each of ``n`` daemons started at once: memory once ready (MB), the STATUS
        lines until then, and its log."""
        socks = [NotifySocket() for _ in range(n)]
        logs = [tmp_path / f"{which}-{i}.log" for i in range(n)]
        procs = []
        for sock, log in zip(socks, logs, strict=True):
            with log.open("w") as err:
                procs.append(subprocess.Popen(
                    [sys.executable, "-m", "edge_agent", "run", "--source", "simulator",
                     "--out", os.devnull],
                    env={**env, "NOTIFY_SOCKET": sock.address}, stderr=err,
                ))  # fmt: skip
        out = []
        try:
            for sock, proc in zip(socks, procs, strict=True):
                sock.wait_for(lambda s: s.having("READY"), what=f"READY=1 on the {which} start")
                statuses = [m["STATUS"] for _, m in sock.having("STATUS")]
                out.append((anon_memory_mb(proc.pid), statuses))
        finally:
            for proc, sock in zip(procs, socks, strict=True):
                proc.send_signal(signal.SIGTERM)
                proc.wait(60)
                sock.close()
        return [(m, s, log.read_text()) for (m, s), log in zip(out, logs, strict=True)]

    first, other = start("first", 2)
    # Whichever took the lock compiled; the other waited for it, then loaded.
    first, other = sorted([first, other], key=lambda r: "in a child process" not in r[2])
    assert first[1][0].startswith("compiling the analysis kernels"), first[1]
    assert "in a child process" in first[2]
    assert any(cache.rglob("*.nbi")) and stamp.exists()  # compiled into the cache
    assert other[1] == [
        "waiting for another edge-agent compiling the analysis kernels",
        "loading the analysis kernels from the cache",
        "reading simulator",
    ], other[1]
    assert "another edge-agent is compiling the analysis kernels" in other[2], other[2]
    assert "child process" not in other[2] and "WARNING" not in other[2], other[2]
    [(second, statuses, log)] = start("second")
    assert statuses[0] == "loading the analysis kernels from the cache", statuses
    assert "child process" not in log and "WARNING" not in log, log
    assert first[0] < second + 50, f"{first[0]:.0f} MB after the first start, {second:.0f} after"
    # The V-I kernels' cache files go (numba names them after their module).
    emptied = [f for f in cache.rglob("vi.*") if f.suffix in (".nbi", ".nbc")]
    assert emptied
    for f in emptied:
        f.unlink()
    [(_, statuses, log)] = start("third")
    assert statuses[0] == "loading the analysis kernels from the cache"
    assert f"were not in numba's cache although {stamp} says it holds them all" in log, log
    assert not stamp.exists()  # so the next start compiles apart


def compilers(cache: Path) -> list[int]:
    """Processes compiling the kernels into ``cache`` (the daemon's child)."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc / "cmdline").read_bytes()
            environ = (proc / "environ").read_bytes()
        except OSError:
            continue
        if b"kernels.warm_up()" in cmdline and f"NUMBA_CACHE_DIR={cache}".encode() in environ:
            found.append(int(proc.name))
    return found


@pytest.mark.parametrize(
    "how", ["compiling, every process signalled", "compiling, the daemon signalled", "waiting"]
)
def test_a_stop_during_a_first_start_ends_it_at_once(how: str, tmp_path: Path):
    """A stop (a restart, a shutdown) while the first start compiles the kernels, or waits
    for another motor's daemon compiling them: the start ends at once, exit 0, the source
    never opened. Before, the daemon went on to compile the kernels itself once its child
    was gone (47 s here; systemd kills a unit still there after 30 s), or waited for the
    other's compile. systemd signals every process of the unit; `kill PID` only the
    daemon, which then ends its child."""
    cache = tmp_path / "numba"
    cache.mkdir()
    stamp = cache / "edge-agent-kernels.json"
    sock = NotifySocket()
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache), "EDGE_AGENT_FFT": "scipy",
           "NOTIFY_SOCKET": sock.address}  # fmt: skip
    held = None
    if how == "waiting":  # another daemon compiles into the same cache
        held = os.open(stamp.with_name(stamp.name + ".lock"), os.O_RDWR | os.O_CREAT)
        fcntl.flock(held, fcntl.LOCK_EX)
    log = tmp_path / "daemon.log"
    with log.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "edge_agent", "run", "--source", "simulator",
             "--out", os.devnull], env=env, stderr=err, start_new_session=True,
        )  # fmt: skip
    try:
        first = "waiting" if how == "waiting" else "compiling"
        sock.wait_for(lambda s: any(m["STATUS"].startswith(first) for _, m in s.having("STATUS")),
                      what=f"STATUS={first}...")  # fmt: skip
        if how.startswith("compiling"):
            wait_until(lambda: compilers(cache), 30, "the compiling child")
        if how == "compiling, every process signalled":
            os.killpg(proc.pid, signal.SIGTERM)
        else:
            proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, log.read_text()
    finally:
        proc.kill()
        sock.close()
        if held is not None:
            os.close(held)
    said = log.read_text()
    if how == "waiting":
        assert "stopped while waiting for the other's compile" in said, said
    else:
        assert "stopped while compiling the analysis kernels" in said, said
        assert "compiling here" not in said, said
    assert not sock.having("READY") and "reading simulator" not in said
    assert not stamp.exists() and compilers(cache) == []


def test_outside_systemd_nothing_is_sent():
    n = Notifier(environ={})
    assert n.watchdog_s is None
    assert not n.send("READY=1")
    n.ready("x")
    n.tick(lambda: "x")
    n.stopping("x")


@pytest.mark.parametrize("abstract", [False, True], ids=["path", "abstract"])
def test_pings_come_every_half_watchdog_interval_and_status_every_10_s(abstract):
    sock = NotifySocket(abstract=abstract)
    now = [100.0]
    try:
        n = Notifier({"NOTIFY_SOCKET": sock.address, "WATCHDOG_USEC": "30000000"},
                     clock=lambda: now[0])  # fmt: skip
        assert n.watchdog_s == 30.0
        n.ready("reading serial")
        calls = []

        def status() -> str:
            calls.append(now[0])
            return f"{len(calls)} windows"

        for _ in range(120):  # a minute of a loop turning every 0.5 s
            now[0] += 0.5
            n.tick(status)
        # READY=1, its own WATCHDOG=1, four more (every 15 s of 60) and six STATUS=.
        sock.wait_for(lambda s: len(s.messages) >= 2 + 4 + 6, 5, "all messages")
        pings = [m for _, m in sock.messages if m == {"WATCHDOG": "1"}]
        # Half the 30 s interval apart.
        assert len(pings) == 1 + 4
        assert calls == [100.0 + STATUS_INTERVAL_S * k for k in range(1, 7)]
        assert sock.messages[-1][1] == {"STATUS": "6 windows"}
    finally:
        sock.close()


def test_a_watchdog_meant_for_another_process_is_not_fed(notify_socket):
    env = {"NOTIFY_SOCKET": notify_socket.address, "WATCHDOG_USEC": "1000000"}
    assert watchdog_interval(env, pid=4242) == 1.0
    assert watchdog_interval({**env, "WATCHDOG_PID": "4242"}, pid=4242) == 1.0
    # Inherited by a child of the daemon: systemd watches the daemon, not the child.
    assert watchdog_interval({**env, "WATCHDOG_PID": "1"}, pid=4242) is None
    assert watchdog_interval({**env, "WATCHDOG_USEC": "0"}, pid=4242) is None
    n = Notifier({**env, "WATCHDOG_PID": "1"})
    n.ready("reading serial")
    n.tick()
    notify_socket.wait_for(lambda s: s.messages, 5, "READY=1")
    time.sleep(0.3)
    assert [m for _, m in notify_socket.messages] == [{"READY": "1", "STATUS": "reading serial"}]


def test_a_vanished_notify_socket_is_logged_once_and_the_daemon_goes_on(caplog):
    sock = NotifySocket()
    n = Notifier({"NOTIFY_SOCKET": sock.address, "WATCHDOG_USEC": "1000000"})
    sock.close()  # systemd restarted, say: the path is gone
    with caplog.at_level(logging.WARNING, logger="edge_agent.systemd"):
        for _ in range(5):
            assert not n.send("WATCHDOG=1")
    assert len(caplog.records) == 1
    assert f"cannot notify systemd at {sock.address}" in caplog.records[0].getMessage()


def test_with_the_mqtt_thread_gone_the_watchdog_is_starved(broker, notify_socket, tmp_path):
    """The broker thread is built never to end; if it did, alerts would pile up in the
    outbox unsent. The loop then stops feeding the watchdog, so systemd restarts it."""
    cfg = load_config(overrides={
        "acquisition": {"source": "simulator", "simulator": {"duration_s": 120.0}},
        "mqtt": {"url": broker.url},
        "store": {"path": str(tmp_path / "edge-agent.db")},
    })  # fmt: skip
    stream = io.StringIO()
    sink = _make_sink(cfg, stream, None, ts_offset=0.0, daemon=True)
    sink.start()
    notifier = Notifier({"NOTIFY_SOCKET": notify_socket.address, "WATCHDOG_USEC": "1000000"})
    stop = threading.Event()
    done: list[object] = []
    worker = threading.Thread(
        target=lambda: done.append(
            run_service(cfg, make_source(cfg), sink, scorer=None, stop=stop, notifier=notifier)
        ),
        daemon=True,
    )
    worker.start()
    try:
        notify_socket.wait_for(lambda s: s.pings_after_ready() >= 2, what="2 WATCHDOG=1")
        sink.publisher.stop()
        assert not sink.publisher.alive
        t_gone = time.monotonic()
        windows = stream.getvalue().count('"type":"window"')
        time.sleep(3.0)  # six turns of the loop, three ping intervals
        assert stream.getvalue().count('"type":"window"') > windows  # still analysing
        late = [t for t, m in notify_socket.having("WATCHDOG") if t > t_gone + 0.1]
        assert late == []
    finally:
        stop.set()
        worker.join(30)
        sink.close()
    assert done, "the service loop did not end"


@pytest.fixture(scope="module")
def systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        pytest.fail("systemd-analyze is missing: apt-get install -y systemd", pytrace=False)
    return path


@pytest.mark.parametrize("unit", [UNIT, TEMPLATE], ids=lambda p: p.name)
def test_the_unit_file_is_valid_for_systemd(systemd_analyze, tmp_path, unit):
    # verify also checks that ExecStart's program exists: point it at this installation.
    installed = shutil.which("edge-agent") or str(Path(sys.executable).parent / "edge-agent")
    text = unit.read_text().replace("/opt/edge-agent/bin/edge-agent", installed)
    copy = tmp_path / unit.name
    copy.write_text(text)
    res = subprocess.run([systemd_analyze, "verify", str(copy)], capture_output=True, text=True)
    assert res.returncode == 0 and not res.stderr.strip(), res.stderr


def unit_settings(unit: Path) -> dict[str, list[str]]:
    """Each key of a unit file with its values, in order (comments left out)."""
    settings: dict[str, list[str]] = {}
    for line in unit.read_text().splitlines():
        if "=" in line and line[0] not in "#;":
            key, value = line.split("=", 1)
            settings.setdefault(key, []).append(value)
    return settings


@pytest.mark.parametrize("unit", [UNIT, TEMPLATE], ids=lambda p: p.name)
def test_the_unit_is_sandboxed_and_keeps_what_numba_needs(systemd_analyze, unit):
    res = subprocess.run(
        [systemd_analyze, "security", "--offline=yes", "--threshold=20", str(unit)],
        capture_output=True, text=True,
    )  # fmt: skip
    # --threshold=20: exit 1 above an exposure of 2.0 (of 10; systemd calls 1.6 "OK").
    assert res.returncode == 0, res.stdout + res.stderr
    settings = {k: v[-1] for k, v in unit_settings(unit).items()}
    assert settings["Type"] == "notify" and settings["WatchdogSec"]
    # llvmlite writes the machine code it compiles into memory, then runs it.
    assert "MemoryDenyWriteExecute" not in settings
    # The installed sources are read-only under ProtectSystem=strict: the compiled kernels
    # must go to the unit's CacheDirectory.
    assert settings["Environment"].startswith(
        "NUMBA_CACHE_DIR=/var/cache/" + settings["CacheDirectory"]
    )


@pytest.mark.parametrize("unit", [UNIT, TEMPLATE], ids=lambda p: p.name)
def test_the_unit_starts_at_boot_whether_the_clock_is_set_or_not(unit):
    """Not ordered after time-sync.target: with systemd-time-wait-sync enabled and no NTP
    server reachable (a plant network), that target is never reached, and the motor
    would go unwatched. Window times follow the clock when NTP sets it (test_clock)."""
    ordering = " ".join(
        unit_settings(unit).get("After", []) + unit_settings(unit).get("Requires", [])
    )
    assert "network-online.target" in ordering
    assert "time-sync.target" not in ordering and "time-set.target" not in ordering


def test_a_motor_of_several_runs_as_the_service_does_with_its_own_config_and_store():
    """edge-agent@NAME is edge-agent.service but for its configuration, secrets and state,
    and shares the compiled kernels' cache under the same dynamic user (so the first start
    compiles for all; a user of its own per unit would take the cache from the others)."""
    one, several = unit_settings(UNIT), unit_settings(TEMPLATE)
    differ = {k for k in one.keys() | several.keys() if one.get(k) != several.get(k)}
    assert differ == {"Description", "ExecStart", "EnvironmentFile", "User", "StateDirectory"}
    assert several["ExecStart"] == [one["ExecStart"][0].replace("edge-agent.toml", "%i.toml")]
    assert several["EnvironmentFile"] == [*one["EnvironmentFile"], "-/etc/edge-agent/%i.env"]
    assert (one["StateDirectory"], several["StateDirectory"]) == (["edge-agent"], ["edge-agent-%i"])
    # DynamicUser's user is named after the unit unless User= names it: edge-agent.
    assert several["User"] == ["edge-agent"] and "User" not in one
    assert several["CacheDirectory"] == one["CacheDirectory"] == ["edge-agent"]
