"""scripts/llama-build.sh: the llama.cpp build names its extensions itself (AVX2's by
default, every one of this CPU's when asked, never AMX), and each build keeps its wheel in
a folder of its own (a shared cache must never hand a machine a wheel its CPU cannot run)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(call: str, **env: str) -> str:
    done = subprocess.run(
        ["bash", "-c", f"source scripts/llama-build.sh; {call}"],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def test_named_extensions_become_cmake_options_and_the_folder_name() -> None:
    features = "AVX AVX2 FMA F16C AVX512"
    assert _run("llama_cmake_args", VOXLINE_LLAMA_FEATURES=features) == (
        "-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON "
        "-DGGML_AVX512=ON"
    )
    folder = _run("llama_wheel_dir", VOXLINE_LLAMA_FEATURES=features, VOXLINE_WHEEL_CACHE="/w")
    assert folder.startswith("/w/llama-cpp-python-")
    assert folder.endswith("-AVX-AVX2-FMA-F16C-AVX512")


def test_the_wheel_is_the_one_in_this_builds_folder_or_none(tmp_path: Path) -> None:
    env = {"VOXLINE_LLAMA_FEATURES": "AVX AVX2", "VOXLINE_WHEEL_CACHE": str(tmp_path)}
    assert _run("llama_wheel", **env) == ""  # not built yet
    other = tmp_path / "llama-cpp-python-0.3.36-AVX"
    other.mkdir()
    (other / "llama_cpp_python-0.3.36-py3-none-any.whl").touch()  # another build's
    assert _run("llama_wheel", **env) == ""
    folder = Path(_run("llama_wheel_dir", **env))
    folder.mkdir()
    wheel = folder / "llama_cpp_python-0.3.36-py3-none-linux_x86_64.whl"
    wheel.touch()
    (folder / "llama_cpp_python-0.3.35-py3-none-linux_x86_64.whl").touch()  # another version
    assert _run("llama_wheel", **env) == str(wheel)


def test_builds_for_different_cpus_keep_their_wheels_apart() -> None:
    portable = _run("llama_wheel_dir", VOXLINE_LLAMA_FEATURES="AVX AVX2 FMA F16C")
    wider = _run("llama_wheel_dir", VOXLINE_LLAMA_FEATURES="AVX AVX2 FMA F16C AVX512")
    assert portable != wider


@pytest.mark.skipif(
    subprocess.run(["uname", "-m"], capture_output=True, text=True).stdout.strip() != "x86_64",
    reason="reads x86 flags",
)
def test_avx2s_extensions_by_default_this_cpus_own_when_asked_and_never_amx() -> None:
    flags = Path("/proc/cpuinfo").read_text().split("flags", 1)[1].split("\n", 1)[0].split()
    default = _run("llama_cmake_args").split()
    own = _run("llama_cmake_args", VOXLINE_LLAMA_FEATURES="cpu").split()
    for args in (default, own):
        assert args[0] == "-DGGML_NATIVE=OFF"
        assert not [a for a in args if "AMX" in a]
        assert ("-DGGML_AVX2=ON" in args) == ("avx2" in flags)
    assert "-DGGML_AVX512=ON" not in default
    assert ("-DGGML_AVX512=ON" in own) == ("avx512f" in flags)
