"""A small, seeded mutation fuzzer for JSON inputs (docs/spec.md §12 item 7), shared by
tests/test_fuzz.py.

Inputs start from valid seeds (JSON-RPC frames of every method, request bodies of every POST
route) and are mutated the two ways malformed input arrives in practice:

- structurally, on the decoded value: a node replaced by a value of the wrong type, a huge or
  negative number, odd unicode, deep nesting; a field dropped, added (known names with wrong
  types, unknown names), renamed, or wrapped in a list;
- byte-wise, on the encoded text: bytes flipped, inserted or deleted, truncation, a slice
  duplicated, two inputs spliced, invalid UTF-8, a BOM, `NaN`/`Infinity`, duplicate keys.

Everything comes from one `random.Random(seed)`, so a run is reproducible and a failure names the
input that caused it. Deep nesting is spliced in as text: `json.dumps` would recurse in Python
itself.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import msgspec

T = TypeVar("T")
DEEP = "\x00deep\x00"  # placeholder for a deeply nested value, replaced after json.dumps
_DEEP_JSON = json.dumps(DEEP)

ODD_STRINGS = (
    "",
    " ",
    "0",
    "-1",
    "1e309",
    "9223372036854775808",
    "-9223372036854775809",
    "12.5",
    "null",
    "true",
    "games#room",
    "ROOM_ACTIVE",
    "\u00e9\u00e8",
    "\u202e\u202d",
    "\U0001f600" * 3,
    "\u0000",
    "\ufeff",
    "\\",
    '"',
    "{",
    "%s%n{0}{field}",
    "<script>",
    "x" * 300,
    "\u0915\u093f" * 40,
)

ODD_NUMBERS = (
    0,
    -1,
    1,
    2**31,
    2**53 + 1,
    2**63 - 1,
    2**63,
    -(2**63),
    -(2**63) - 1,
    2**64,
    10**30,
    10**400,
    -(10**400),
    0.5,
    -0.0,
    1e308,
    5e-324,
)


def _below(rng: random.Random, n: int) -> int:
    """`rng.randrange(n)`, several times cheaper (the fuzzer draws millions of these)."""
    return int(rng.random() * n)


def _pick(rng: random.Random, options: Sequence[T]) -> T:
    return options[int(rng.random() * len(options))]


def odd_value(rng: random.Random, names: Sequence[str]) -> Any:
    """One value of a random, usually wrong, type."""
    pick = _below(rng, 10)
    if pick == 0:
        return _pick(rng, (None, True, False))
    if pick in (1, 2):
        return _pick(rng, ODD_NUMBERS)
    if pick in (3, 4):
        return _pick(rng, ODD_STRINGS)
    if pick == 5:
        return []
    if pick == 6:
        return {}
    if pick == 7:
        return DEEP
    if pick == 8:
        return [odd_value(rng, names) for _ in range(1 + _below(rng, 3))]
    return {_pick(rng, names): odd_value(rng, names) for _ in range(1 + _below(rng, 2))}


def _walk(rng: random.Random, value: Any) -> tuple[Any, ...]:
    """A random path into a JSON value (`()` is the root): a walk down that stops at each
    level with some chance, so shallow and deep nodes are both picked, without listing all."""
    path: tuple[Any, ...] = ()
    while isinstance(value, dict | list) and value and rng.random() < 0.7:
        step = _pick(rng, list(value)) if isinstance(value, dict) else _below(rng, len(value))
        path, value = (*path, step), value[step]
    return path


def _copy_along(value: Any, path: tuple[Any, ...]) -> tuple[Any, Any]:
    """(a copy of `value` whose containers on `path` are new, the node at `path` in it): the
    mutation then never touches the seed it came from."""
    root = node = value.copy() if isinstance(value, dict | list) else value
    for step in path:
        child = node[step]
        child = child.copy() if isinstance(child, dict | list) else child
        node[step] = child
        node = child
    return root, node


def mutate_value(rng: random.Random, value: Any, names: Sequence[str]) -> Any:
    """One structural mutation of a decoded JSON value (the input is left as it was)."""
    path = _walk(rng, value)
    value, node = _copy_along(value, path)
    action = _below(rng, 6)
    if action <= 1 or not isinstance(node, dict | list):
        replacement = odd_value(rng, names) if action != 1 else [node]
        if not path:
            return replacement
        parent = value
        for step in path[:-1]:
            parent = parent[step]
        parent[path[-1]] = replacement
    elif isinstance(node, dict) and action == 2 and node:
        del node[_pick(rng, list(node))]  # a field goes missing
    elif isinstance(node, dict) and action == 3:
        node[_pick(rng, names)] = odd_value(rng, names)  # a known field with a wrong type
    elif isinstance(node, dict) and action == 4 and node:
        old = _pick(rng, list(node))
        node[old.upper() if rng.random() < 0.5 else old + "_"] = node.pop(old)
    elif isinstance(node, list):
        node.append(node[0] if action == 2 and node else odd_value(rng, names))
    else:
        node[_pick(rng, names)] = odd_value(rng, names)  # an empty object gains a field
    return value


def encode(rng: random.Random, value: Any) -> bytes:
    """JSON text of `value`, with any deep-nesting placeholder expanded."""
    # A quarter of the time, \uXXXX escapes for every non-ASCII character.
    text = json.dumps(value) if rng.random() < 0.25 else msgspec.json.encode(value).decode()
    while _DEEP_JSON in text:
        depth = _pick(rng, (64, 300, 1000, 3000))
        opener, closer = ("[", "]") if rng.random() < 0.5 else ('{"a":', "}")
        deep = opener * depth + "1" + closer * depth
        text = text.replace(_DEEP_JSON, deep, 1)
    return text.encode("utf-8", "surrogatepass")


_SPLICES = (
    b"\xff",
    b"\xc3",
    b"\xed\xa0\x80",
    b"\xef\xbb\xbf",
    b"NaN",
    b"-Infinity",
    b"\\ud800",
    b'"\\u0000"',
    b",",
    b"}",
    b"]",
    b"[",
    b'"',
    b"1e999999",
    b"-",
    b"\x00",
    b"\t\n ",
)


def mutate_bytes(rng: random.Random, original: bytes, others: Sequence[bytes]) -> bytes:
    """One byte-level mutation of an encoded input."""
    if not original:
        return _pick(rng, _SPLICES)
    data = bytearray(original)
    at = _below(rng, len(data) + 1)
    action = _below(rng, 8)
    if action == 0 and at < len(data):
        data[at] ^= 1 << _below(rng, 8)
    elif action == 1:
        data[at:at] = bytes([_below(rng, 256)])
    elif action == 2:
        del data[at : at + 1 + _below(rng, 15)]
    elif action == 3:
        del data[at:]  # truncation
    elif action == 4:
        data[at:at] = data[at : at + 1 + _below(rng, 63)]
    elif action == 5:
        other = _pick(rng, others)
        data[at:] = other[_below(rng, len(other) + 1) :]
    elif action == 6 and data.startswith(b"{") and len(data) > 2:
        first = bytes(data[1 : data.find(b",") if b"," in data else -1])
        data[1:1] = first + b","  # a duplicate key, when the first member is simple
    else:
        data[at:at] = _pick(rng, _SPLICES)
    return bytes(data)


def mutants(
    seed: int, seeds: Sequence[Any], names: Sequence[str], count: int
) -> list[tuple[int, bytes]]:
    """`count` inputs, each (index, bytes): the valid seeds themselves first, then mutants of
    1..3 structural and/or byte-level mutations."""
    rng = random.Random(seed)
    encoded = [json.dumps(value).encode() for value in seeds]
    out = [(index, data) for index, data in enumerate(encoded)][:count]
    while len(out) < count:
        value = _pick(rng, seeds)
        for _ in range(_pick(rng, (0, 1, 1, 2, 3))):
            value = mutate_value(rng, value, names)
        data = encode(rng, value)
        for _ in range(_pick(rng, (0, 0, 1, 1, 2))):
            data = mutate_bytes(rng, data, encoded)
        out.append((len(out), data))
    return out


def field_names(*types: type[Any]) -> list[str]:
    """The wire names of every field of these msgspec Structs and the Structs they nest."""
    names: set[str] = set()

    def visit(info: Any) -> None:
        if isinstance(info, msgspec.inspect.StructType):
            for field in info.fields:
                names.add(field.encode_name)
                visit(field.type)
        elif isinstance(info, msgspec.inspect.UnionType):
            for option in info.types:
                visit(option)
        elif isinstance(info, msgspec.inspect.ListType | msgspec.inspect.DictType):
            visit(getattr(info, "item_type", None) or getattr(info, "value_type", None))

    for typ in types:
        visit(msgspec.inspect.type_info(typ))
    return sorted(names)


def shown(data: bytes, limit: int = 300) -> str:
    """An input as a failure message shows it: repr, long ones cut in the middle."""
    text = repr(data)
    return text if len(text) <= limit else f"{text[: limit // 2]}...{text[-limit // 2 :]}"


Check = Callable[[bytes], None]
