"""Lua scripts, read once from `lua/*.lua` and registered with redis-py (EVALSHA, reloaded by
the client on NOSCRIPT)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

LUA_DIR = Path(__file__).with_name("lua")


@functools.cache
def source(name: str) -> str:
    return (LUA_DIR / f"{name}.lua").read_text(encoding="utf-8")


def register(store: Any, name: str) -> Any:
    return store.register_script(source(name))
