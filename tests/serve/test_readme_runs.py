"""Every shell example the README marks ``<!-- runs -->`` runs, as written, against the
real app: each block in one bash (its variables shared), ``127.0.0.1:8000`` pointed at the
test app, ``.venv/bin/`` at the test's virtualenv, every ``curl`` failing on an HTTP
error and every command on a non-zero exit (see :mod:`tests.support.readme_blocks`).

The app is found the way a reader's commands find it: a server record (what
``voxline serve`` writes) in a run directory of the test's own, with no
``VOXLINE_REDIS_URL``, so ``voxline talk``/``stats``/``replay`` locate it themselves.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.serve._app import App
from tests.support.readme_blocks import README, Block, as_script, bash_blocks
from voxline.runstate import ServerRecord, recorded

pytestmark = [pytest.mark.serve, pytest.mark.models, pytest.mark.redis]

ROOT = README.parent
RUNS = [block for block in bash_blocks() if block.runs]


@pytest.fixture(scope="module")
def reader(app: App, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A reader's shell: a directory to work in and the environment the blocks run with."""
    if shutil.which("jq") is None:
        pytest.fail("the README's examples need jq (scripts/setup.sh installs it)")
    work = tmp_path_factory.mktemp("readme")
    run_dir = work / ".run"
    record = ServerRecord(url=app.url, redis_url=str(app.settings.redis_url),
                          key_prefix=app.settings.log.key_prefix, port=app.settings.port,
                          pid=os.getpid())
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOXLINE_")}
    env.update(VOXLINE_RUN_DIR=str(run_dir), PYTHONPATH=str(ROOT), COLUMNS="200",
               CWD=str(work))
    with recorded(record, run_dir):
        yield env


@pytest.mark.parametrize("block", RUNS, ids=[block.name for block in RUNS])
def test_the_readme_example_runs(block: Block, app: App, reader: dict[str, str]) -> None:
    script = as_script(block, url=app.url)
    done = subprocess.run(["bash", "-c", script], cwd=reader["CWD"], env=reader, text=True,
                          capture_output=True, timeout=540, check=False)
    assert done.returncode == 0, (
        f"{block.name} failed ({done.returncode}):\n{block.code}\n--- stdout\n"
        f"{done.stdout[-4000:]}\n--- stderr\n{done.stderr[-4000:]}")


def test_the_files_the_examples_write_are_there(reader: dict[str, str]) -> None:
    """What the examples say they write was written (they run first, in README order)."""
    work = Path(reader["CWD"])
    for name in ("reply.wav", "question.wav", "hello.wav", "replay/transcript.txt"):
        assert (work / name).exists() and (work / name).stat().st_size > 0, name
