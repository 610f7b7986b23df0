"""The README and the docs pages tell the truth about the code, checked without starting
the app: the settings tables are what the settings models render, the defaults the prose
quotes are the code's, every shell example is marked as run (by
``tests/serve/test_readme_runs.py``) or excused, every link leads somewhere in the
repository, and the README stays a front page (the rest is in ``docs/``)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from schemas import Settings
from schemas._settings_doc import README_PATH as SETTINGS_PAGE
from schemas._settings_doc import readme_with_settings, render_settings
from tests.support.readme_blocks import README, ROOT, as_script, bash_blocks, page_texts

PAGES = page_texts()
TEXT = "\n".join(PAGES.values())


def defaults(model: type[BaseModel] = Settings, prefix: str = "VOXLINE_") -> dict[str, Any]:
    """Every setting's variable → its default, from the models."""
    found: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        kind = field.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            found.update(defaults(kind, f"{prefix}{name.upper()}__"))
        else:
            found[f"{prefix}{name.upper()}"] = field.get_default(call_default_factory=True)
    return found


def test_the_settings_tables_are_what_the_code_renders() -> None:
    text = SETTINGS_PAGE.read_text(encoding="utf-8")
    assert readme_with_settings(text) == text, (
        f"{SETTINGS_PAGE.name}'s settings tables differ from the code: run `python -m schemas`")


def test_the_readme_is_a_front_page() -> None:
    """What it is, the two commands, the API at a glance, links: the rest is in docs/."""
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 300, len(lines)
    assert max(len(line) for line in lines) <= 400


def test_every_setting_is_in_the_tables() -> None:
    rendered = render_settings()
    for variable in defaults():
        assert f"`{variable}`" in rendered, variable
    rows = [line for line in rendered.splitlines() if line.startswith("| `")]
    assert all(len(re.findall(r"(?<!\\)\|", line)) == 4 for line in rows)


_QUOTE = re.compile(r"`(VOXLINE_[A-Z_]+|__[A-Z_]+|[A-Z][A-Z_]+[A-Z])` "
                    r"\(([\d,._]+)(?: (KiB|MiB|GiB|s))?\)")
_UNITS = {"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "s": 1, None: 1}


def test_the_defaults_the_prose_quotes_are_the_codes() -> None:
    """A default quoted as ``VOXLINE_X__Y` (N)``, as ``__Z` (N)`` after one in the same
    sentence, or as a bare ``Z` (N)`` that names one setting only, is the code's."""
    known = defaults()
    quoted = 0
    for sentence in re.split(r"(?<=[.;])\s", TEXT):
        section = ""
        for match in _QUOTE.finditer(sentence):
            name, number, unit = match.groups()
            if name.startswith("VOXLINE_"):
                section = name.rsplit("__", 1)[0] + "__" if "__" in name else "VOXLINE_"
            elif name.startswith("__"):
                name = section + name.removeprefix("__")
            else:  # a bare name: checked when exactly one setting has it
                owners = [k for k in known if k.endswith(f"__{name}")]
                name = owners[0] if len(owners) == 1 else name
            if name not in known:
                continue
            quoted += 1
            value = float(number.replace(",", "").replace("_", "")) * _UNITS[unit]
            assert known[name] is not None and float(known[name]) == value, (
                f"README quotes {name} as {match.group(0)}; the code's default is "
                f"{known[name]}")
    assert quoted >= 10  # the check found the quotes it is there for


def test_every_variable_the_readme_names_exists() -> None:
    known = defaults()
    engine_options = ("VOXLINE_STT__", "VOXLINE_VAD__", "VOXLINE_LLM__", "VOXLINE_TTS__")
    # read by the commands (the test command: its workers; set-up: llama.cpp's build)
    not_settings = {"VOXLINE_RUN_DIR", "VOXLINE_VENV", "VOXLINE_TEST_WORKERS",
                    "VOXLINE_LLAMA_FEATURES"}
    for name in set(re.findall(r"\bVOXLINE_[A-Z][A-Z_]*[A-Z]\b", TEXT)):
        if name in known or name in not_settings or name.startswith(engine_options):
            continue
        assert any(k.startswith(name) for k in known), f"README names {name}: no such setting"


def test_every_shell_example_is_run_or_excused() -> None:
    blocks = bash_blocks()
    assert blocks
    for block in blocks:
        assert block.marked, (f"{block.name}: mark the block <!-- runs --> or "
                              "<!-- does not run: why -->")
        assert block.runs or block.reason, f"{block.name}: say why it does not run"
    assert sum(b.runs for b in blocks) >= 3


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_every_example_that_runs_is_valid_bash() -> None:
    for block in bash_blocks():
        if block.runs:
            script = as_script(block, url="http://127.0.0.1:1", venv_bin="/venv/bin")
            checked = subprocess.run(["bash", "-n"], input=script, text=True,
                                     capture_output=True, check=False)
            assert checked.returncode == 0, f"{block.name}: {checked.stderr}"


def test_an_example_is_rewritten_for_the_test_app_only_where_machines_differ() -> None:
    text = ("<!-- runs -->\n```bash\n.venv/bin/voxline talk hi --url http://127.0.0.1:8000\n"
            "curl -s 127.0.0.1:8000/healthz\n```\n\n<!-- does not run: forever -->\n"
            "```bash\nsleep infinity\n```\n\n```bash\necho unmarked\n```\n")
    first, second, third = bash_blocks(text)
    script = as_script(first, url="http://127.0.0.1:4242", venv_bin="/v/bin")
    assert "/v/bin/voxline talk hi --url http://127.0.0.1:4242\n" in script
    assert "curl -s 127.0.0.1:4242/healthz" in script
    assert script.startswith("set -euo pipefail")
    assert (second.runs, second.reason) == (False, "forever")
    assert not third.marked


def test_the_pages_link_nothing_outside_the_repository() -> None:
    for name, text in PAGES.items():
        here = (ROOT / name).parent
        for target in re.findall(r"\]\(([^)#\s]+)", text):
            if re.match(r"[a-z]+://", target):
                continue
            path = (here / target).resolve()
            assert path.is_relative_to(ROOT), f"{name} links {target}, outside the repository"
            assert Path(path).exists(), f"{name} links {target}, which does not exist"


def test_the_generator_renders_any_new_setting() -> None:
    """Settings other engineers add (any type, nested at any depth) render without a change
    to the generator; a cell never breaks its table."""
    from typing import Literal

    from pydantic import Field, SecretStr

    from schemas._settings_doc import _tables

    class Inner(BaseModel):
        """Deep: a section in a section."""

        depth: int = Field(default=2, ge=1, description="a | pipe and <angle> brackets")

    class Section(BaseModel):
        mode: Literal["a", "b"] = "a"
        secret: SecretStr | None = None
        names: tuple[str, ...] = ("x",)
        limit_bytes: int = 3 << 20
        table: dict[str, int] = Field(default_factory=lambda: {"k": 1})
        inner: Inner = Field(default_factory=Inner)

    class Top(BaseModel):
        flag: bool = True
        section: Section = Field(default_factory=Section)

    text = "\n".join(_tables(Top, "X_", "**`X_*`**"))
    for row in ("| `X_FLAG` | `true` |", "| `X_SECTION__MODE` | `a` |",
                "| `X_SECTION__SECRET` | unset |", '| `X_SECTION__NAMES` | `["x"]` |',
                "| `X_SECTION__LIMIT_BYTES` | `3145728` (3 MiB) |",
                '| `X_SECTION__TABLE` | `{"k": 1}` |',
                "| `X_SECTION__INNER__DEPTH` | `2` | a \\| pipe and \\<angle\\> brackets (≥ 1) |",
                "**`X_SECTION__INNER__*`**: Deep: a section in a section."):
        assert row in text, row
    assert all(len(re.findall(r"(?<!\\)\|", line)) == 4  # three cells, whatever they hold
               for line in text.splitlines() if line.startswith("| `"))
