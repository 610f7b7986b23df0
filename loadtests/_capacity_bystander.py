"""The idle phase's bystander in a process of its own, so that its clock is not the crowd's.

Two hundred idle sessions are ~10,000 frames a second sent from the runner's event loop. A
talking user on that same loop would have its own frames sent, and its reply's first chunk
noticed, whenever the loop came round to them, and its voice-to-voice would measure the
runner's loop as much as the server. So the runner hands the bystander's scripts and
settings to a child process (``python -m loadtests._capacity_bystander SPEC``) that runs
the same simulated user (:class:`loadtests.capacity.Run`) against the same server and
prints what it measured as one JSON line. The crowd's CPU window is over before the
bystander starts (:func:`loadtests._capacity_idle.measure_crowd`), so its process costs
nothing there.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import pickle
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
#: what the child may take beyond its talking time: start-up, the last turn, closing
SLACK_S = 180.0


async def run_in_child(spec: dict[str, Any]) -> dict[str, Any]:
    """Run the bystander ``spec`` describes in a child process; its figures.

    ``spec``: ``url``, ``scripts`` (the users' scripts: lists of
    :class:`~loadtests.capacity.Utterance`), ``seed``, ``seconds``, ``turns_per_session``,
    ``think_s``, ``settings`` (more session settings). The utterances travel as plain
    fields (the runner's module is ``__main__``, which the child's is not)."""
    plain = {**spec, "scripts": [[dataclasses.astuple(u) for u in script]
                                 for script in spec["scripts"]]}
    with tempfile.NamedTemporaryFile(prefix="voxline-bystander-", suffix=".pickle") as file:
        pickle.dump(plain, file)
        file.flush()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "loadtests._capacity_bystander", file.name,
            cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE)
        try:
            out, _ = await asyncio.wait_for(child.communicate(), spec["seconds"] + SLACK_S)
        except TimeoutError:
            child.kill()
            await child.wait()
            raise RuntimeError("the bystander's process did not finish in time") from None
    if child.returncode != 0:
        raise RuntimeError(f"the bystander's process failed (exit {child.returncode})")
    figures: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return figures


async def _talk(spec: dict[str, Any]) -> dict[str, Any]:
    from loadtests.capacity import TURN_TIMEOUT_S, Run, StepStats, Utterance, bystander_figures
    from voxline.client import VoxlineClient

    scripts = [[Utterance(*fields) for fields in script] for script in spec["scripts"]]
    async with VoxlineClient(spec["url"], timeout=TURN_TIMEOUT_S) as client:
        run = Run(client, scripts, spec["seed"], spec["turns_per_session"],
                  spec["think_s"], spec["settings"])
        step = StepStats(1)
        await run.user(step, time.monotonic() + spec["seconds"], spec["seed"] * 7919)
    return bystander_figures(spec["seconds"], step)


def main() -> None:
    with open(sys.argv[1], "rb") as file:
        spec = pickle.load(file)  # written by this runner's own process just now
    print(json.dumps(asyncio.run(_talk(spec))), flush=True)


if __name__ == "__main__":
    main()
