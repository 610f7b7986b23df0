"""The README's shell examples, as the tests run them.

Every ```bash block of the README and the docs pages (:data:`PAGES`) is marked by the
HTML comment right before it:
``<!-- runs -->`` (the README test executes it against the real app) or
``<!-- does not run: why -->`` (it serves forever, needs a GPU, is the test suite ...).
An unmarked block is an error, so a new example is either run or explicitly excused.

A block that runs is rewritten only where the reader's machine and the test's differ:
``127.0.0.1:8000`` becomes the test app's address and ``.venv/bin/`` the test's virtualenv;
``curl`` is wrapped to fail on an HTTP error (``--fail-with-body``), and the block runs
under ``set -euo pipefail`` in one bash, so its shell variables carry from line to line
and any failing line fails the test.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
#: every page whose examples are checked, in the order they run (the site's order:
#: later examples use what earlier ones wrote)
PAGES = (README, DOCS / "index.md", DOCS / "usage.md", DOCS / "architecture.md",
         DOCS / "operations.md", DOCS / "performance.md", DOCS / "measurements.md",
         DOCS / "configuration.md")

_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
_MARK = re.compile(r"<!--\s*(runs|does not run:\s*(?P<reason>.*?))\s*-->\s*\Z", re.S)

#: what the test shell defines before a block runs
PRELUDE = """set -euo pipefail
curl() { command curl --fail-with-body --show-error --max-time 300 "$@"; }
"""


@dataclass(frozen=True)
class Block:
    line: int  # where the block's fence is in its page (1-based)
    code: str
    runs: bool
    reason: str  # why it does not run; "" when it runs, or when unmarked
    marked: bool
    page: str = "README.md"

    @property
    def name(self) -> str:
        return f"{self.page}:{self.line}"


def page_texts() -> dict[str, str]:
    """Every checked page's text by its path from the repository's root, in order."""
    return {str(page.relative_to(ROOT)): page.read_text(encoding="utf-8") for page in PAGES}


def bash_blocks(text: str | None = None, page: str = "README.md") -> list[Block]:
    """Every ```bash block of ``text`` (a page named ``page``), in order, with its
    marker; without ``text``, those of every page of :data:`PAGES`."""
    if text is None:
        return [block for name, body in page_texts().items()
                for block in bash_blocks(body, name)]
    blocks = []
    for match in _FENCE.finditer(text):
        if match.group(1) not in ("bash", "sh", "shell", "console"):
            continue
        before = text[: match.start()]
        tail = before[before.rfind("\n\n") + 1:] if "\n\n" in before else before
        mark = _MARK.search(tail)
        blocks.append(Block(
            line=before.count("\n") + 1,
            code=match.group(2),
            runs=bool(mark) and mark.group(1) == "runs",  # type: ignore[union-attr]
            reason=" ".join((mark.group("reason") or "").split()) if mark else "",
            marked=mark is not None,
            page=page,
        ))
    return blocks


def as_script(block: Block, *, url: str, venv_bin: str | None = None) -> str:
    """The block as the test runs it (see the module docstring)."""
    venv_bin = venv_bin or str(Path(sys.executable).parent)
    address = url.removeprefix("http://").removeprefix("https://").rstrip("/")
    code = block.code.replace("127.0.0.1:8000", address)
    code = code.replace(".venv/bin/", venv_bin.rstrip("/") + "/")
    return PRELUDE + code
