"""restore --dask (issue 12, part 3): the same per-file tasks on a Dask cluster, the manifest
and the summary written by the client, a worker lost mid-file not losing the file."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from genrestore.cli import main
from genrestore.manifest import MANIFEST_NAME

distributed = pytest.importorskip("distributed")  # CI installs it (the test extra)

RATE = 32000


def _clips(folder: Path, count: int, seconds: float) -> None:
    folder.mkdir(parents=True)
    t = np.arange(int(RATE * seconds)) / RATE
    rng = np.random.default_rng(7)
    for i in range(count):
        music = 0.3 * np.sin(2 * np.pi * (180 + 40 * i) * t) * (1 + 0.4 * np.sin(2 * np.pi * t))
        sf.write(folder / f"c{i:02d}.wav", music + 0.002 * rng.standard_normal(t.size), RATE,
                 subtype="PCM_16")


def _outputs(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.wav"))}


def _records(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / MANIFEST_NAME).read_text().splitlines()]


def test_a_local_cluster_restores_what_a_local_run_does_bit_for_bit(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _clips(tmp_path / "in", 5, 2.0)
    assert main(["restore", str(tmp_path / "in"), "-o", f"{tmp_path / 'pool'}/", "--jobs", "2",
                 "-q"]) == 0
    capsys.readouterr()
    assert main(["restore", str(tmp_path / "in"), "-o", f"{tmp_path / 'dask'}/",
                 "--dask", "local:2"]) == 0
    err = capsys.readouterr().err
    assert "5 restored, 0 failed" in err
    assert "Dask local:2" in err
    assert _outputs(tmp_path / "dask") == _outputs(tmp_path / "pool")
    records = _records(tmp_path / "dask")
    assert sorted(Path(r["output"]).name for r in records) == [f"c{i:02d}.wav" for i in range(5)]
    assert {r["status"] for r in records} == {"done"}


def test_a_worker_killed_mid_batch_loses_no_file(tmp_path: Path) -> None:
    _clips(tmp_path / "in", 10, 4.0)
    assert main(["restore", str(tmp_path / "in"), "-o", f"{tmp_path / 'pool'}/", "--jobs", "2",
                 "-q"]) == 0
    out = tmp_path / "dask"
    killed: list[int] = []
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:

        def kill_a_busy_worker() -> None:
            """Once the first file is done, SIGKILL a worker that is restoring another."""
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if (out / MANIFEST_NAME).is_file() and (out / MANIFEST_NAME).read_text():
                    busy = [w for w, tasks in client.processing().items() if tasks]
                    if busy:
                        pid = client.run(os.getpid, workers=busy[:1])[busy[0]]
                        os.kill(pid, signal.SIGKILL)
                        killed.append(pid)
                        return
                time.sleep(0.02)

        killer = threading.Thread(target=kill_a_busy_worker)
        killer.start()
        code = main(["restore", str(tmp_path / "in"), "-o", f"{out}/", "--dask",
                     cluster.scheduler_address, "-q"])
        killer.join()
    assert killed, "no worker was busy to kill"
    assert code == 0
    records = _records(out)
    assert len(records) == 10  # each file once, none counted twice
    assert {r["status"] for r in records} == {"done"}
    assert _outputs(out) == _outputs(tmp_path / "pool")
    assert not [p for p in out.iterdir() if p.name.endswith(".part")]


def test_a_cluster_task_never_replaces_a_file_the_plan_did_not_allow(tmp_path: Path) -> None:
    """Tasks run with the plan's own overwrite flag: a file that appeared at a destination
    after the plan is refused and kept, unless it holds exactly what the task writes (its
    own output, written before its worker was lost)."""
    from genrestore import cli

    _clips(tmp_path / "in", 2, 1.0)
    reference = tmp_path / "ref"
    assert main(["restore", str(tmp_path / "in"), "-o", f"{reference}/", "--jobs", "1",
                 "-q"]) == 0
    out = tmp_path / "out"
    out.mkdir()
    jobs = [cli.Job(tmp_path / "in" / f"c{i:02d}.wav", out / f"c{i:02d}.wav", "auto", {},
                    44100, "24", "wav", False) for i in range(2)]
    (out / "c00.wav").write_bytes(b"the user's own file")  # appeared after the plan
    (out / "c01.wav").write_bytes((reference / "c01.wav").read_bytes())  # a lost task's output
    outcomes: dict[int, tuple] = {}
    cli._run_dask(jobs, "local:1", (), lambda i, outcome: outcomes.__setitem__(i, outcome))
    assert outcomes[0][1] is None
    assert "exists" in outcomes[0][2]
    assert (out / "c00.wav").read_bytes() == b"the user's own file"
    assert outcomes[1][2] is None
    assert (out / "c01.wav").read_bytes() == (reference / "c01.wav").read_bytes()


def test_without_the_cluster_extra_dask_is_a_usage_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    _clips(tmp_path / "in", 2, 1.0)
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if not installed
    assert main(["restore", str(tmp_path / "in"), "-o", f"{tmp_path / 'out'}/",
                 "--dask", "local:2"]) == 2
    assert "pip install 'genrestore[cluster]'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("*.wav"))
