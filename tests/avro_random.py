"""Random values of the Avro schemas the compiled readers and writers handle, edge values
favoured (one-byte varint limits, 64-bit extremes, non-ASCII, empty and long strings)."""

from __future__ import annotations

import random

INT64 = (-(2 ** 63), 2 ** 63 - 1)


def random_text(rnd: random.Random) -> str:
    return "".join(rnd.choice("aZ09/._-éß€😀\x00") for _ in range(rnd.choice((0, 1, 5, 63, 64, 200))))


def random_long(rnd: random.Random) -> int:
    return rnd.choice((0, 1, -1, 63, 64, -64, -65, 2 ** 31 - 1, -(2 ** 31), 1_795_969_015_474,
                       *INT64, rnd.randint(*INT64)))


def random_value(rnd: random.Random, t, named: dict):
    if isinstance(t, list):
        return None if rnd.random() < 0.4 else random_value(rnd, next(b for b in t if b != "null"), named)
    if isinstance(t, str) and t in named:
        return random_value(rnd, named[t], named)
    if isinstance(t, dict):
        kind = t["type"]
        if kind == "record":
            named[t["name"]] = t
            return {f["name"]: random_value(rnd, f["type"], named) for f in t["fields"]}
        if kind == "enum":
            return rnd.choice(t["symbols"])
        if kind == "array":
            return [random_value(rnd, t["items"], named) for _ in range(rnd.choice((0, 1, 3, 70)))]
        if kind == "map":
            return {random_text(rnd): random_value(rnd, t["values"], named) for _ in range(rnd.choice((0, 1, 4)))}
        return random_value(rnd, kind, named)
    return {"string": lambda: random_text(rnd), "bytes": lambda: random_text(rnd).encode(),
            "int": lambda: rnd.choice((0, -1, 2 ** 31 - 1, -(2 ** 31), rnd.randint(-999, 999))),
            "long": lambda: random_long(rnd), "boolean": lambda: rnd.random() < 0.5,
            "double": lambda: rnd.choice((0.0, -0.0, 1e308, -1.5, float("inf"), rnd.uniform(-180, 180))),
            "float": lambda: rnd.choice((0.0, 1.5, -2.25)), "null": lambda: None}[t]()
