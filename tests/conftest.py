"""Shared fixtures: real Mosquitto brokers and recording subscribers (tests/mosquitto.py).

Every broker and subscriber made through these fixtures is stopped at teardown, also when
the test fails. Without Mosquitto installed the MQTT tests fail (not skip), saying how to
install it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.mosquitto import Mosquitto, MosquittoMissing, Subscriber

_WISDOM_DIR = tempfile.mkdtemp(prefix="edge-agent-tests-")
# As edge_agent does on import (edge_agent/__init__.py), for the tests that load
# onnxruntime before it: no telemetry from the test machine either.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")


def pytest_configure(config: pytest.Config) -> None:
    # FFTW's measured plans (kernels/fft.py) go to a file of this test session, measured
    # afresh as on a new machine, not to the user's cache; subprocesses inherit it.
    os.environ["EDGE_AGENT_FFT_WISDOM"] = os.path.join(_WISDOM_DIR, "fftw-wisdom")


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(_WISDOM_DIR, ignore_errors=True)


@pytest.fixture
def make_broker(tmp_path: Path) -> Iterator[Callable[..., Mosquitto]]:
    """``make_broker(**options)``: a started :class:`Mosquitto` (see its options)."""
    brokers: list[Mosquitto] = []

    def make(**options: Any) -> Mosquitto:
        try:
            broker = Mosquitto(tmp_path / f"broker{len(brokers)}", **options)
        except MosquittoMissing as exc:
            missing = str(exc)
        else:
            missing = ""
        if missing:  # outside the except: the report shows just the message
            pytest.fail(missing, pytrace=False)
        brokers.append(broker)
        broker.start()
        return broker

    yield make
    for broker in brokers:
        broker.close()


@pytest.fixture
def broker(make_broker: Callable[..., Mosquitto]) -> Mosquitto:
    """A running anonymous broker on a free loopback port."""
    return make_broker()


@pytest.fixture
def make_subscriber() -> Iterator[Callable[..., Subscriber]]:
    """``make_subscriber(broker, topics, **options)``: a started, recording Subscriber."""
    subs: list[Subscriber] = []

    def make(broker: Mosquitto, topics: str | list[str] = "#", **options: Any) -> Subscriber:
        sub = Subscriber(broker, topics, **options)
        subs.append(sub)
        return sub.start()

    yield make
    for sub in subs:
        try:
            sub.stop()
        except Exception:  # a broker already gone; the loop thread still ends
            pass


@pytest.fixture(autouse=True)
def _state_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """`edge-agent run` keeps an event store in the user's state folder: a test's goes to a
    temporary one (also for the subprocesses it starts), never to the developer's home."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("state")))
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)


@pytest.fixture(scope="session")
def itsc_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model bundle trained with `edge-agent train` on the three healthy ITSC recordings."""
    from click.testing import CliRunner

    from edge_agent.cli import main

    data = Path(__file__).parent / "data"
    out = tmp_path_factory.mktemp("model") / "itsc"
    files = sorted((data / "itsc").glob("SC_HLT_00[1-3].csv"))
    args = ["train", *map(str, files), "--out", str(out), "--config", str(data / "itsc_motor.toml")]
    res = CliRunner().invoke(main, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return out
