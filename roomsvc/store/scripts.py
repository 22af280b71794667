"""Lua scripts (`lua/*.lua`), read once. `script(name)` is what the batches of store/batching.py
call (EVALSHA, loaded again on NOSCRIPT); `register` gives a redis-py script for the few callers
that send one call on its own."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from pathlib import Path
from typing import Any

LUA_DIR = Path(__file__).with_name("lua")


@dataclasses.dataclass(frozen=True, slots=True)
class Script:
    """A Lua script by its source and the SHA-1 the store knows it by."""

    source: str
    sha: str

    @classmethod
    def of(cls, source: str) -> Script:
        return cls(source, hashlib.sha1(source.encode()).hexdigest())


@functools.cache
def source(name: str) -> str:
    return (LUA_DIR / f"{name}.lua").read_text(encoding="utf-8")


@functools.cache
def script(name: str) -> Script:
    return Script.of(source(name))


def register(store: Any, name: str) -> Any:
    return store.register_script(source(name))
