"""Where the benchmarks write their results: a markdown table and, beside it, the raw numbers as JSON."""

from __future__ import annotations

import json
import os


def write_tables(out: str, table: str, raw: dict) -> None:
    """Write ``table`` to ``out`` (markdown) and ``raw`` to ``out`` with the suffix ``.json``."""
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        f.write(table + "\n")
    with open(os.path.splitext(out)[0] + ".json", "w", encoding="utf-8") as f:
        json.dump(raw, f, indent=1)
    print(f"\nwrote {out}")


def print_table(lines: list, out=None) -> None:
    """Print the table ``lines`` (markdown rows) and, with ``out``, write it there too (no JSON)."""
    table = "\n".join(lines)
    print("\n" + table)
    if out:
        with open(out, "w", encoding="utf-8") as f:
            f.write(table + "\n")
