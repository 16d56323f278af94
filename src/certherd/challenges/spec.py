"""A solver described as data, as stored in a lineage's settings and in certherd.toml."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["SolverSpec"]


@dataclass(frozen=True)
class SolverSpec:
    """One way to answer challenges, as data: ``kind`` (http, webroot, tls-alpn, dns,
    hook) with its options, for the names in ``names`` (empty: every name)."""

    kind: str
    options: dict[str, str] = field(default_factory=dict)
    names: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "options": dict(self.options), "names": list(self.names)}

    @classmethod
    def from_json(cls, data: Any) -> SolverSpec:
        return cls(
            kind=str(data["kind"]),
            options={str(k): str(v) for k, v in dict(data.get("options", {})).items()},
            names=tuple(str(n) for n in data.get("names", ())),
        )
