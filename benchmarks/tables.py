"""Where the benchmarks write their results: a markdown table and, beside it, the raw numbers as JSON."""

from __future__ import annotations

import argparse
import json
import math
import os


def count(minimum: int = 1):
    """An argparse ``type``: an integer of at least ``minimum``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {value}")
        return value
    return parse


def finite(text: str) -> float:
    """An argparse ``type``: a finite number."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


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
