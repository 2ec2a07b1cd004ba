"""PyTorch backend: any ``torch.nn.Module``; torch is imported only when this backend is used."""
from __future__ import annotations

import copy
import sys
from typing import Any, Iterable, Sequence

import numpy as np

from wsx.backend import Backend, Population, check_labels
from wsx.errors import InvalidDataError, InvalidModelError
from wsx.hookspecs import hookimpl
from wsx.layers import LayerInfo
from wsx.plugins import unavailable_reason

LAYER_TYPES = ("Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d",
               "Linear")
# Batches up to this size stay on the scoring device for the whole run.
DEVICE_CACHE_BYTES = 1 << 30


def _is_module(model: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(model, torch.nn.Module)


class TorchBackend(Backend):
    """Scores a ``torch.nn.Module`` with substituted weights through ``torch.func.functional_call``,
    so the user's parameters are never written during a search.

    ``data`` is ``(inputs, labels)`` (numpy arrays or tensors) or an iterable of ``(inputs, labels)``
    batches such as a DataLoader (read once, kept in memory). ``device`` defaults to CUDA when
    available; a model living elsewhere is scored on a copy, never moved.
    ``include`` / ``exclude`` filter layers of interest by parameter name.
    """

    name = "torch"
    extra = "torch"
    supports_gpu = True

    def __init__(self, model: Any, data: Any = None, *, metric: Any = "top1", batch_size: int = 256,
                 device: str | None = None, include: Sequence[str] | None = None,
                 exclude: Sequence[str] | None = None):
        super().__init__(model, data, metric=metric, batch_size=batch_size, device=device)
        import torch

        if not isinstance(model, torch.nn.Module):
            raise InvalidModelError(f"the torch backend needs a torch.nn.Module, got {type(model).__name__}")
        self.include = include
        self.exclude = exclude
        model_device = next((p.device for p in model.parameters()), torch.device("cpu"))
        if device is None:
            device = "cuda" if torch.cuda.is_available() else str(model_device)
        self.device_ = torch.device(device)
        # Scoring runs on a copy when the device differs: the user's model never moves.
        self.net_ = model if self.device_ == model_device else copy.deepcopy(model).to(self.device_)
        self._params = dict(self.net_.named_parameters())
        # data=None gives weight access only (wsx.apply / wsx.export)
        self._inputs, self._labels = self._load_data(data) if data is not None else (None, np.zeros(0, int))
        self._device_batches: dict = {}

    @classmethod
    def available(cls) -> tuple[bool, str]:
        try:
            import torch  # noqa: F401
        except ImportError:
            return False, unavailable_reason("torch", "torch")
        return True, ""

    @classmethod
    def accepts(cls, model: Any) -> bool:
        return _is_module(model)

    # -- data ---------------------------------------------------------------------------------
    def _load_data(self, data: Any):
        import torch

        if isinstance(data, tuple) and len(data) == 2 and not isinstance(data[0], tuple):
            inputs, labels = data
        else:
            try:
                batches = list(data)
            except TypeError:
                raise InvalidDataError("data must be (inputs, labels) arrays or an iterable of "
                                       f"(inputs, labels) batches, got {type(data).__name__}") from None
            if not batches:
                raise InvalidDataError("the data loader yielded no batches; pass at least one sample")
            inputs = torch.cat([torch.as_tensor(b[0]) for b in batches])
            labels = torch.cat([torch.as_tensor(b[1]) for b in batches])
        inputs = torch.as_tensor(np.asarray(inputs) if not isinstance(inputs, torch.Tensor) else inputs)
        if inputs.is_floating_point():
            inputs = inputs.to(next(iter(self._params.values())).dtype if self._params else torch.float32)
        labels_np = check_labels(len(inputs), labels.cpu().numpy() if isinstance(labels, torch.Tensor)
                                 else np.asarray(labels))
        return inputs.cpu(), labels_np.astype(np.int64)

    @property
    def num_samples(self) -> int:
        return len(self._labels)

    def _iter_batches(self, subset: np.ndarray | None) -> Iterable[tuple[Any, np.ndarray]]:
        import torch

        idx = np.arange(self.num_samples) if subset is None else np.asarray(subset)
        key = (idx.size, hash(idx.tobytes()))
        cached = self._device_batches.get(key)
        if cached is not None:
            yield from cached
            return
        keep = self._inputs[:1].element_size() * self._inputs[0].numel() * idx.size <= DEVICE_CACHE_BYTES
        out = []
        for start in range(0, idx.size, self.batch_size):
            sel = idx[start:start + self.batch_size]
            x = self._inputs[torch.from_numpy(sel)].to(self.device_)
            item = (x, self._labels[sel])
            if keep:
                out.append(item)
            yield item
        if keep:
            self._device_batches = {key: out}  # only the latest index set is kept

    # -- layers -------------------------------------------------------------------------------
    def _layers(self) -> Iterable[LayerInfo]:
        names_by_id: dict[int, str] = {}
        for pname, p in self.model.named_parameters():  # de-duplicated: a shared tensor has one name
            names_by_id.setdefault(id(p), pname)
        seen: dict[int, list] = {}
        order: list[int] = []
        for mname, module in self.model.named_modules():
            if not any(c.__name__ in LAYER_TYPES and c.__module__.startswith("torch.nn")
                       for c in type(module).__mro__):
                continue
            w = getattr(module, "weight", None)
            if w is None or id(w) not in names_by_id:
                continue
            if id(w) not in seen:
                seen[id(w)] = [w, type(module).__name__, []]
                order.append(id(w))
            seen[id(w)][2].append(mname)
        found = []
        for pid in order:
            w, kind, modules = seen[pid]
            pname = names_by_id[pid]
            if self.include is not None and pname not in self.include:
                continue
            if self.exclude is not None and pname in self.exclude:
                continue
            found.append(LayerInfo(pname, tuple(w.shape), int(w.numel()), kind, tuple(modules)))
        if not found:
            raise InvalidModelError(
                f"{type(self.model).__name__} has no layers of interest ({', '.join(LAYER_TYPES)} with a "
                "weight); wsx shares the weights of convolution and linear layers")
        return found

    def get_weights(self, name: str) -> np.ndarray:
        param = dict(self.model.named_parameters()).get(name)
        if param is None:
            raise KeyError(f"no parameter {name!r}; layers are {[i.name for i in self.layers()]}")
        return param.detach().cpu().numpy().copy()

    def set_weights(self, name: str, array: np.ndarray) -> None:
        import torch

        param = dict(self.model.named_parameters())[name]
        array = np.asarray(array)
        if tuple(array.shape) != tuple(param.shape):
            raise InvalidModelError(f"weights for {name!r} have shape {array.shape}, expected {tuple(param.shape)}")
        with torch.no_grad():
            param.copy_(torch.from_numpy(np.ascontiguousarray(array)).to(param.dtype))

    def snapshot(self) -> Any:
        state = {k: v.detach().clone() for k, v in self.model.state_dict(keep_vars=True).items()}
        modes = {name: m.training for name, m in self.model.named_modules()}
        return state, modes

    def restore(self, snapshot: Any) -> None:
        import torch

        state, modes = snapshot
        current = self.model.state_dict(keep_vars=True)
        with torch.no_grad():
            for k, v in state.items():
                if not torch.equal(current[k], v):
                    current[k].copy_(v)
        for name, m in self.model.named_modules():
            if name in modes:
                m.training = modes[name]

    # -- scoring ------------------------------------------------------------------------------
    def _prepare(self, population: Population) -> Any:
        import torch

        out = []
        for cand in population:
            subs = {}
            for name, arr in cand.items():
                ref = self._params[name]
                subs[name] = torch.from_numpy(np.ascontiguousarray(arr)).to(device=self.device_, dtype=ref.dtype)
            out.append(subs)
        return out

    def score(self, population: Population, subset: np.ndarray | None = None) -> np.ndarray:
        import torch

        modes = [(m, m.training) for m in self.net_.modules()]
        self.net_.eval()
        try:
            with torch.inference_mode():
                return super().score(population, subset)
        finally:
            for m, flag in modes:
                m.training = flag

    def _forward_population(self, inputs: Any, prepared: Any) -> Sequence[np.ndarray]:
        from torch.func import functional_call

        outs = []
        for subs in prepared:
            y = functional_call(self.net_, subs, (inputs,)) if subs else self.net_(inputs)
            outs.append(y.float().cpu().numpy())
        return outs

    def close(self) -> None:
        self._device_batches = {}


@hookimpl
def wsx_backends():
    return [TorchBackend]


@hookimpl
def wsx_backend_for(model):
    return "torch" if _is_module(model) else None
