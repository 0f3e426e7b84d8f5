"""The stamp that lets a start skip compiling the kernels apart (edge_agent.kernel_cache).

The daemon's starts with it are in test_systemd; here, what invalidates it."""

from __future__ import annotations

import os
import shutil

from edge_agent import kernel_cache
from edge_agent.kernel_cache import Stamp, cache_key


def test_a_stamp_holds_only_the_key_it_was_written_with(tmp_path):
    stamp = Stamp(tmp_path / "cache" / "edge-agent-kernels.json")
    key = cache_key("scipy")
    assert not stamp.holds(key)  # none yet
    assert stamp.write(key) and stamp.holds(key)
    assert not stamp.holds(cache_key("fftw"))  # the scipy backend has kernels of its own
    assert not stamp.holds({**key, "numba": "0.0.1"})  # an upgrade
    stamp.path.write_text("{not json")
    assert not stamp.holds(key)
    stamp.remove()
    assert not stamp.path.exists()
    stamp.remove()  # nothing to remove


def test_a_kernel_source_touched_is_a_new_key(tmp_path, monkeypatch):
    """numba recompiles a kernel whose source file's time or size changed (a reinstall,
    an edit): the stamp must not say the cache holds it."""
    folder = tmp_path / "kernels"
    shutil.copytree(kernel_cache._kernels_dir(), folder, ignore=shutil.ignore_patterns("__py*"))
    monkeypatch.setattr(kernel_cache, "_kernels_dir", lambda: folder)
    key = cache_key("scipy")
    assert "vi.py" in key["sources"]
    st = (folder / "vi.py").stat()
    os.utime(folder / "vi.py", (st.st_atime, st.st_mtime + 1))
    assert cache_key("scipy") != key


def test_a_stamp_that_cannot_be_written_fails_nothing(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    stamp = Stamp(blocker / "edge-agent-kernels.json")  # its folder is a file
    assert not stamp.write(cache_key("scipy"))
    assert not stamp.holds(cache_key("scipy"))
