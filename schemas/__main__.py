"""``python -m schemas``: rewrite docs/protocol.schema.json from the models."""

from schemas._jsonschema import write

if __name__ == "__main__":
    print(f"wrote {write()}")
