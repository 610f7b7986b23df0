"""``python -m schemas``: rewrite docs/protocol.schema.json and the settings tables of
docs/configuration.md from the models. ``--check``: rewrite nothing, exit 1 when either
is out of date."""

import sys

from schemas._jsonschema import SCHEMA_PATH, render, write
from schemas._settings_doc import README_PATH, readme_with_settings, rewrite_readme


def _stale() -> list[str]:
    stale = []
    if SCHEMA_PATH.read_text(encoding="utf-8") != render():
        stale.append(str(SCHEMA_PATH))
    readme = README_PATH.read_text(encoding="utf-8")
    if readme != readme_with_settings(readme):
        stale.append(str(README_PATH))
    return stale


if __name__ == "__main__":
    if "--check" in sys.argv[1:]:
        if stale := _stale():
            sys.exit(f"out of date (run `python -m schemas`): {', '.join(stale)}")
        print("up to date")
    else:
        print(f"wrote {write()}")
        if README_PATH.exists():  # a source checkout (an installed package has no docs)
            changed = rewrite_readme()
            print(f"{'rewrote' if changed else 'kept'} the settings tables of {README_PATH}")
