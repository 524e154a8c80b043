"""The one place training reads the environment: the process group torchrun describes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["DistributedEnv"]


@dataclass(frozen=True)
class DistributedEnv:
    """Rank and world size of a `torchrun` launch (world size 1 when not launched by it)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.rank < self.world_size or self.local_rank < 0:
            raise ValueError(f"bad distributed ranks: rank {self.rank} of {self.world_size}")

    @property
    def launched(self) -> bool:
        return self.world_size > 1

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> DistributedEnv:
        if "WORLD_SIZE" not in environ:
            return cls()
        return cls(
            int(environ["RANK"]), int(environ["WORLD_SIZE"]), int(environ.get("LOCAL_RANK", "0"))
        )
