"""``loadtests/bench_stt_batch.py``'s options for a machine without Piper (the GPU one):
the utterances saved with ``--save-clips`` come back as they were spoken, and
``--device cuda`` where CTranslate2 sees no GPU stops at the engine's configuration error
instead of measuring the CPU under a GPU's name. Its ``--smoke`` run is
``test_loadtests_smoke.py``'s."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from loadtests.bench_stt_batch import load_clips, save_clips, throughput

ROOT = Path(__file__).resolve().parents[2]


def test_saved_clips_come_back_as_spoken(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    clips = [rng.integers(-3000, 3000, size, dtype="<i2").tobytes() for size in (16000, 7, 1)]
    path = tmp_path / "clips.npz"
    save_clips(path, clips, ("one", "two", "three"))
    assert load_clips(path) == clips


def test_throughput_counts_utterances_and_audio() -> None:
    assert throughput(4, 10.0, 0.5) == {"utterances_per_s": 8.0, "audio_s_per_s": 20.0}


def test_cuda_without_a_gpu_stops_at_the_configuration_error(tmp_path: Path) -> None:
    import ctranslate2

    if ctranslate2.get_cuda_device_count() > 0:
        pytest.skip("CTranslate2 sees a GPU here")
    clips = tmp_path / "clips.npz"
    save_clips(clips, [np.zeros(1600, dtype="<i2").tobytes()], ("silence",))
    env = {**os.environ, "VOXLINE_REPORTS_DIR": str(tmp_path),
           "PYTHONPATH": os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))}
    proc = subprocess.run(
        [sys.executable, "-m", "loadtests.bench_stt_batch", "--clips", str(clips),
         "--device", "cuda", "--sizes", "1", "--repeats", "1"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "device=cuda but CTranslate2 sees no GPU" in proc.stderr
    assert not (tmp_path / "bench_stt_batch.json").exists()
