"""Loads the Lua scripts beside this module, each prefixed with the shared helpers of ``lua/lib.lua``."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import redis
from redis.commands.core import Script

LUA_DIR = Path(__file__).with_name("lua")


@cache
def _source(name: str) -> str:
    lib = (LUA_DIR / "lib.lua").read_text()
    return lib + "\n" + (LUA_DIR / f"{name}.lua").read_text()


def script(client: redis.Redis, name: str) -> Script:
    """The registered script ``name`` (EVALSHA, reloaded on NOSCRIPT after a Redis restart)."""
    cache: dict[str, Script] = client.__dict__.setdefault("_recplay_scripts", {})
    found = cache.get(name)
    if found is None:
        found = cache[name] = client.register_script(_source(name))
    return found
