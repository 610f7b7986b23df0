"""Which of some modules a fresh interpreter has loaded after a given import."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterable


def loaded_after(imports: str, candidates: Iterable[str]) -> list[str]:
    """The ``candidates`` in ``sys.modules`` after ``import <imports>`` in a new process."""
    code = (
        f"import json, sys, {imports}\n"
        f"print(json.dumps(sorted(set({sorted(candidates)!r}) & set(sys.modules))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded: list[str] = json.loads(out.stdout)
    return loaded
