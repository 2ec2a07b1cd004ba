"""Description of one layer of interest, shared by every backend."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LayerInfo:
    """A weight tensor wsx may approximate.

    ``name`` is the backend's stable key for the tensor (for torch the parameter name), ``shape`` its
    shape, ``size`` its number of weights W_i and ``kind`` the framework's layer type (``Conv2d``...).
    ``modules`` lists every module using the tensor (a weight shared by two modules is one layer).
    """

    name: str
    shape: tuple
    size: int
    kind: str
    modules: tuple = ()

    def to_dict(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "size": self.size, "kind": self.kind,
                "modules": list(self.modules)}
