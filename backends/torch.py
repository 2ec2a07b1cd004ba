"""PyTorch backend: any ``torch.nn.Module``; torch is imported only when this backend is used."""
from __future__ import annotations

import contextlib
import copy
import sys
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from wsx.backend import DEFAULT_REFERENCE_BYTES, Backend
from wsx.data import tree_map
from wsx.errors import InvalidModelError, InvalidSettingError
from wsx.layers import LayerInfo

from ._scoring import (DEFAULT_PREFIX_CACHE_BYTES, DEFAULT_VMAP_BYTES, BatchRef, PopulationScoring, Split,
                       backend_hooks, check_shape, name_filter)

LAYER_TYPES = ("Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d",
               "Linear", "Embedding", "EmbeddingBag", "MultiheadAttention")
# the weight matrices of a layer type, when not "weight" (MultiheadAttention holds its input projection as
# one bare parameter, or three when keys and values have other sizes than the queries)
WEIGHT_NAMES = {"MultiheadAttention": ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight")}
# Batches up to this size stay on the scoring device for the whole run.
DEVICE_CACHE_BYTES = 1 << 30
PREFIX_PATHS = ("auto", "fx", "hooks")
# precision= names -> torch dtype names (None: float32, no autocast)
PRECISIONS = {"fp32": None, "float32": None, "bf16": "bfloat16", "bfloat16": "bfloat16", "fp16": "float16",
              "float16": "float16"}
# tolerance of fast paths against one-by-one forwards under reduced precision (relative to the outputs' scale)
REDUCED_RTOL = 5e-2
# samples on which reduced-precision scoring is compared with float32
PRECISION_SAMPLES = 256


def _is_module(model: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(model, torch.nn.Module)


def _subnormals(t):
    """Mask of the nonzero values of a floating tensor below its dtype's smallest normal number, or
    None when there are none."""
    import torch

    if not t.is_floating_point():
        return None
    with torch.no_grad():
        mask = (t.abs() < torch.finfo(t.dtype).tiny) & (t != 0)
    return mask if bool(mask.any()) else None


def _check_device(device: Any):
    """``device`` as a torch.device this machine has; an InvalidSettingError otherwise."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise InvalidSettingError(f"device={device!r} is not a torch device ({exc}); pass 'cpu', 'cuda', "
                                  "'cuda:N' or None") from None
    if dev.type == "cuda" and not (torch.cuda.is_available() and (dev.index or 0) < torch.cuda.device_count()):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        raise InvalidSettingError(f"device={device!r}: this machine has {count} CUDA device(s) usable by torch; "
                                  "pass device='cpu' or None (the best available)")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise InvalidSettingError(f"device={device!r}: MPS is not available here; pass device='cpu' or None")
    return dev


def _autocast_dtype(precision: Any, device):
    """The autocast dtype ``precision`` asks for on ``device`` (None: float32); an InvalidSettingError
    for a name torch cannot autocast to there."""
    import torch

    if precision not in PRECISIONS:
        raise InvalidSettingError(f"precision={precision!r}: use 'fp32', 'bf16' or 'fp16'")
    name = PRECISIONS[precision]
    if name is None:
        return None
    if name == "float16" and device.type == "cpu":
        raise InvalidSettingError("precision='fp16' needs a GPU (torch autocasts to float16 on CUDA); on CPU "
                                  "use precision='bf16' or 'fp32'")
    if not torch.amp.is_autocast_available(device.type):
        raise InvalidSettingError(f"precision={precision!r}: torch cannot autocast on {device.type}; use 'fp32'")
    return getattr(torch, name)


def call_args(inputs: Any) -> tuple[tuple, dict]:
    """How the model is called on ``inputs``: a dict as keywords (``model(**inputs)``), a tuple or
    list as positional arguments (``model(*inputs)``), an array as the one argument."""
    if isinstance(inputs, dict):
        return (), inputs
    if isinstance(inputs, (tuple, list)):
        return tuple(inputs), {}
    return (inputs,), {}


def as_numpy(y: Any) -> np.ndarray:
    """The selected output as numpy (float32 for floating tensors of any precision)."""
    import torch

    if not isinstance(y, torch.Tensor):
        raise InvalidModelError(f"the selected model output is a {type(y).__name__}, not a tensor; pass output= "
                                "a key, an index or a callable returning the tensor the metric reads")
    return (y.float() if y.is_floating_point() else y).detach().cpu().numpy()


def _hooked(split: Split | None) -> bool:
    """Whether ``split`` is a module-hook cut (the whole model runs, cut-away modules replay)."""
    return split is not None and hasattr(split.suffix, "replaying")


def _replaying(split: Split | None, live: Any):
    return split.suffix.replaying(live) if _hooked(split) else contextlib.nullcontext()


class TorchBackend(PopulationScoring, Backend):
    """Scores a ``torch.nn.Module`` with substituted weights through ``torch.func.functional_call``,
    so the user's parameters are never written during a search.

    ``data`` is any form ``wsx.data.as_data`` takes: ``(inputs, labels)``, inputs alone, ``wsx.Data`` or an
    iterable of batches such as a DataLoader (read once, kept in memory); inputs are an array, a
    dict or a tuple of arrays / tensors. The model is called as ``model(x)`` on an array,
    ``model(**inputs)`` on a dict (a tokenizer's output) and ``model(*inputs)`` on a tuple; floating
    inputs are cast to the model's dtype. ``output`` picks what the metric sees of a dict, tuple or
    ``ModelOutput`` result (``wsx.outputs``). ``device`` defaults to CUDA when
    available; a model living elsewhere is scored on a copy, never moved.
    ``include`` / ``exclude`` filter layers of interest by parameter name (exact or fnmatch pattern).
    Layers of interest are the weights of convolutions, linear layers and embedding tables
    (``nn.Embedding``, ``nn.EmbeddingBag``) and the projection matrices of ``nn.MultiheadAttention``
    (``in_proj_weight``, or ``q/k/v_proj_weight``); a tensor shared by several modules (tied input
    and output embeddings) is one layer.

    Population scoring stacks the candidates' weights and runs them in one forward: by default through
    the ``torch.fx`` graph with the candidates folded into the channel axis (``fold_population``, see
    ``wsx_backends._torch_population``: grouped convolutions and batched GEMMs, which beat vmap's
    layout on CPU), checked once per graph against a one-by-one forward; where the model cannot be
    traced or the check fails, ``torch.func.vmap`` over ``functional_call`` (``fold_error_`` says
    why). The graph is traced from the call the data makes (``wsx_backends._torch_fx.trace``), modules
    it cannot trace run as one node (``traced_leaves_``), and a node the fold cannot batch runs once per
    candidate: fallbacks are per node. BatchNorm and Dropout run in eval mode. The prefix cache cuts
    the ``torch.fx`` graph before the changed layer, or, where fx fails, replays the outputs of the
    modules that finish before it (``prefix_path``: "auto", "fx" or "hooks"; ``prefix_paths_`` says
    which cut served each set of changed layers, see ``wsx_backends._torch_hooks``). On CPU, subnormal weights (nonzero, below float32's 1.2e-38) are scored as 0, in
    a private copy of the model and in each candidate (``flush_subnormals=False`` keeps them;
    ``subnormals_flushed_`` counts the model's at creation): CPU kernels slow down many times over on
    such operands. ``vmap`` is True, False or "auto" (on GPU; on CPU for small networks, and for
    larger ones by timing both on the first population, ``vmap_choice_``),
    ``prefix_cache=False`` turns the cache off; memory bounds ``prefix_cache_bytes`` and
    ``vmap_bytes`` (see ``wsx_backends._scoring``). Cached activations
    assume the model is not edited behind the backend's back (``set_weights`` and ``restore`` clear
    them; call ``close()`` after editing the model yourself). ``precision="bf16"`` (or ``"fp16"``,
    CUDA only) scores under ``torch.autocast``; the first ``score`` compares the original model's
    outputs with float32 on the first 256 samples (``precision_report_``, also in the result's notes).
    """

    name = "torch"
    extra = "torch"
    requires = ("torch",)
    zoo_framework = "torch"
    supports_gpu = True
    measure_vmap_choice = True

    def __init__(self, model: Any, data: Any = None, *, metric: Any = None, output: Any = None,
                 batch_size: int = 256, device: str | None = None, include: Sequence[str] | None = None,
                 exclude: Sequence[str] | None = None, vmap: bool | str = "auto", prefix_cache: bool = True,
                 prefix_cache_bytes: int = DEFAULT_PREFIX_CACHE_BYTES, vmap_bytes: int = DEFAULT_VMAP_BYTES,
                 fold_population: bool = True, flush_subnormals: bool = True,
                 reference_bytes: int = DEFAULT_REFERENCE_BYTES, prefix_path: str = "auto",
                 precision: str = "fp32"):
        super().__init__(model, data, metric=metric, output=output, batch_size=batch_size, device=device,
                         reference_bytes=reference_bytes)
        import torch

        if not isinstance(model, torch.nn.Module):
            raise InvalidModelError(f"the torch backend needs a torch.nn.Module, got {type(model).__name__}")
        self.include = include
        self.exclude = exclude
        model_device = next((p.device for p in model.parameters()), torch.device("cpu"))
        if device is None:
            device = "cuda" if torch.cuda.is_available() else str(model_device)
        self.device_ = _check_device(device)
        # Scoring runs on a copy when the device differs: the user's model never moves.
        self.net_ = model if self.device_ == model_device else copy.deepcopy(model).to(self.device_)
        # Subnormal weights (|w| < 1.2e-38, common after weight decay) make CPU kernels crawl; scoring
        # runs on a private copy with them zeroed (their products vanish in float32 sums anyway).
        self.flush_subnormals = bool(flush_subnormals) and self.device_.type == "cpu"
        self.subnormals_flushed_ = 0
        if self.flush_subnormals and data is not None and any(_subnormals(p) is not None for p in model.parameters()):
            if self.net_ is model:
                self.net_ = copy.deepcopy(model)
            self.subnormals_flushed_ = self._flush(self.net_.parameters())
        self._params = dict(self.net_.named_parameters())
        # functional_call re-derives tied weights on every call unless told there are none
        self._tied = len(list(self.net_.named_parameters(remove_duplicate=False))) > len(self._params)
        # data=None gives weight access only (wsx.apply / wsx.export)
        self._load(data)
        self._traced: Any = None
        self._whole_part: Any = None
        self.traced_leaves_: dict = {}  # module name -> why the trace runs it as one node
        self._working: int | None = None
        self.fold_population = bool(fold_population)
        self.fold_error_: str | None = None
        self._folders: dict[int, tuple] = {}  # id(module) -> (module, interpreter that passed its check)
        if prefix_path not in PREFIX_PATHS:
            raise InvalidSettingError(f"prefix_path={prefix_path!r}: use one of {', '.join(PREFIX_PATHS)}")
        self.prefix_path = prefix_path
        self.prefix_paths_: dict = {}  # changed layers -> "fx" or "hooks": how each cut was made
        self._calls: Any = None  # module calls of the probe forward, for hook cuts
        self.precision = precision
        self.autocast_dtype_ = _autocast_dtype(precision, self.device_)
        if self.autocast_dtype_ is not None:  # two reduced-precision paths differ by more than float32 rounding
            self.split_rtol = REDUCED_RTOL
        self.precision_report_: dict | None = None
        self._init_scoring(vmap=vmap, prefix_cache=prefix_cache, prefix_cache_bytes=prefix_cache_bytes,
                           vmap_bytes=vmap_bytes)

    @classmethod
    def conformance_examples(cls) -> dict:
        from wsx.testing import models

        return {"lenet": cls.conformance_example, "encoder": models.torch_encoder, "bert": models.torch_bert,
                "vit": models.torch_vit}

    @classmethod
    def accepts(cls, model: Any) -> bool:
        return _is_module(model)

    # -- data ---------------------------------------------------------------------------------
    def _native_inputs(self, tree: Any) -> Any:
        import torch

        dtype = next(iter(self._params.values())).dtype if self._params else torch.float32

        def convert(a, _):
            t = torch.from_numpy(np.ascontiguousarray(a))
            return (t.to(dtype) if t.is_floating_point() else t).to(self.device_)

        return tree_map(convert, tree)

    def _keep_batches(self, idx: np.ndarray) -> bool:
        return self._data.input_bytes_per_sample() * idx.size <= DEVICE_CACHE_BYTES

    def _new_batches(self, idx: np.ndarray, skey: tuple) -> Iterator[tuple[BatchRef, Any, np.ndarray]]:
        for start, (sel, part) in enumerate(self._data.batches(idx, self.batch_size, self._first_batch())):
            yield BatchRef(self._native_inputs(part.inputs), (skey, start)), part.labels, sel

    probe_samples = 1

    # -- layers -------------------------------------------------------------------------------
    def _layers(self) -> Iterable[LayerInfo]:
        names_by_id: dict[int, str] = {}
        for pname, p in self.model.named_parameters():  # de-duplicated: a shared tensor has one name
            names_by_id.setdefault(id(p), pname)
        seen: dict[int, list] = {}
        order: list[int] = []
        for mname, module in self.model.named_modules():
            kind = next((c.__name__ for c in type(module).__mro__ if c.__name__ in LAYER_TYPES
                         and c.__module__.startswith("torch.nn")), None)
            if kind is None:
                continue
            for wname in WEIGHT_NAMES.get(kind, ("weight",)):
                w = module._parameters.get(wname)
                if w is None or id(w) not in names_by_id:
                    continue
                if id(w) not in seen:  # a tensor several modules share (tied embeddings) is one layer
                    seen[id(w)] = [w, type(module).__name__, []]
                    order.append(id(w))
                seen[id(w)][2].append(mname)
        found = []
        for pid in order:
            w, kind, modules = seen[pid]
            pname = names_by_id[pid]
            if name_filter(pname, self.include, self.exclude):
                found.append(LayerInfo(pname, tuple(w.shape), int(w.numel()), kind, tuple(modules)))
        if not found:
            raise InvalidModelError(
                f"{type(self.model).__name__} has no layers of interest ({', '.join(LAYER_TYPES)} with a "
                "weight, after include/exclude); wsx shares the weights of convolution, linear, embedding and "
                "attention layers")
        return found

    def _param(self, name: str):
        param = dict(self.model.named_parameters()).get(name)
        if param is None:
            raise KeyError(f"no parameter {name!r}; layers are {[i.name for i in self.layers()]}")
        return param

    def get_weights(self, name: str) -> np.ndarray:
        return self._param(name).detach().cpu().numpy().copy()

    def set_weights(self, name: str, array: np.ndarray) -> None:
        import torch

        param = self._param(name)
        array = check_shape(name, array, param.shape)
        with torch.no_grad():
            param.copy_(torch.from_numpy(np.ascontiguousarray(array)).to(param.dtype))
            if self.net_ is not self.model:
                self._params[name].copy_(param.to(self.device_))
        if self.net_ is not self.model and self.flush_subnormals:
            self._flush([self._params[name]])
        self._invalidate()

    def tensors(self) -> dict[str, np.ndarray]:
        return {k: v.detach().cpu().numpy().copy() for k, v in self.model.state_dict(keep_vars=True).items()}

    def tensor_aliases(self) -> dict[str, str]:
        by_id = {id(p): n for n, p in self.model.named_parameters() if n in {i.name for i in self.layers()}}
        return {k: by_id[id(v)] for k, v in self.model.state_dict(keep_vars=True).items()
                if id(v) in by_id and by_id[id(v)] != k}

    def computation_digest(self) -> str:
        """The module tree as printed (classes and their settings: ReLU or Tanh, kernel sizes) plus
        the code of every module class not from torch (its forward and helpers)."""
        import hashlib

        from wsx.identity import classes_digest, strip_addresses

        text = strip_addresses(repr(self.model)) + classes_digest(self.model.modules(), ("torch.",))
        return hashlib.sha256(text.encode()).hexdigest()

    def snapshot(self) -> Any:
        state = {k: v.detach().clone() for k, v in self.model.state_dict(keep_vars=True).items()}
        modes = {name: m.training for name, m in self.model.named_modules()}
        return state, modes

    def restore(self, snapshot: Any) -> None:
        import torch

        state, modes = snapshot
        current = self.model.state_dict(keep_vars=True)
        changed = False
        with torch.no_grad():
            for k, v in state.items():
                if not torch.equal(current[k], v):
                    current[k].copy_(v)
                    changed = True
        for name, m in self.model.named_modules():
            if name in modes:
                m.training = modes[name]
        if changed:
            if self.net_ is not self.model:
                self.net_.load_state_dict(self.model.state_dict())
                if self.flush_subnormals:
                    self._flush(self.net_.parameters())
            self._invalidate()

    # -- scoring ------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _scoring_mode(self):
        """Eval mode (BatchNorm statistics, no Dropout) and no autograd, undone afterwards."""
        import torch

        modes = [(m, m.training) for m in self.net_.modules()]
        self.net_.eval()
        try:
            with torch.inference_mode(), self._autocast():
                yield
        finally:
            for m, flag in modes:
                m.training = flag

    def _autocast(self, enabled: bool = True):
        """Reduced-precision autocast (``precision=``), or nothing."""
        import torch

        if self.autocast_dtype_ is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_.type, dtype=self.autocast_dtype_, enabled=enabled)

    def score(self, population, subset: np.ndarray | None = None) -> np.ndarray:
        with self._scoring_mode():
            if self.autocast_dtype_ is not None and self.precision_report_ is None:
                self.precision_report_ = self._precision_agreement()
            return super().score(population, subset)

    def _precision_agreement(self) -> dict:
        """Reduced-precision outputs of the original model against float32 ones, on the first
        ``PRECISION_SAMPLES`` samples: top-1 agreement (for outputs with a class axis), mean cosine
        per sample, and the largest difference relative to the float32 outputs' largest magnitude."""
        idx = np.arange(min(PRECISION_SAMPLES, self.num_samples))
        low = np.concatenate([self._probe_outputs({}, idx[i:i + self.batch_size])
                              for i in range(0, idx.size, self.batch_size)]).astype(np.float64)
        with self._autocast(enabled=False):
            ref = np.concatenate([self._probe_outputs({}, idx[i:i + self.batch_size])
                                  for i in range(0, idx.size, self.batch_size)]).astype(np.float64)
        flat_low, flat_ref = low.reshape(len(idx), -1), ref.reshape(len(idx), -1)
        norms = np.linalg.norm(flat_low, axis=1) * np.linalg.norm(flat_ref, axis=1)
        cosine = np.where(norms > 0, (flat_low * flat_ref).sum(1) / np.where(norms > 0, norms, 1), 1.0)
        report = {"precision": str(self.autocast_dtype_).replace("torch.", ""), "samples": int(idx.size),
                  "mean_cosine": float(cosine.mean()),
                  "max_error": float(np.abs(low - ref).max() / max(float(np.abs(ref).max()), 1e-30))}
        if ref.ndim >= 2 and ref.shape[-1] > 1:
            report["top1_agreement"] = float((low.argmax(-1) == ref.argmax(-1)).mean())
        return report

    def notes(self) -> list[str]:
        """How scoring ran, for the result: reduced precision and its agreement with float32."""
        out = []
        r = self.precision_report_
        if r is not None:
            top1 = f"top-1 agreement {100 * r['top1_agreement']:.2f} %, " if "top1_agreement" in r else ""
            out.append(f"scored under {r['precision']} autocast on {self.device_.type}; against float32 on the "
                       f"first {r['samples']} samples: {top1}mean cosine {r['mean_cosine']:.6f}, largest "
                       f"difference {100 * r['max_error']:.3g} % of the outputs' largest magnitude")
        return out

    def unused_layers(self, samples: int = 16, seed: int = 0) -> list[str]:
        with self._scoring_mode():
            return super().unused_layers(samples, seed)

    def _squared_gradients(self, names: tuple, inputs: Any, kind: str, target: np.ndarray) -> dict:
        """Per-sample autograd through ``functional_call`` in eval mode (wsx.sensitivity)."""
        import torch
        import torch.nn.functional as F
        from torch.func import functional_call

        params = {n: self._params[n].detach().requires_grad_(True) for n in names}
        totals = {n: torch.zeros_like(p, dtype=torch.float64) for n, p in params.items()}
        t = torch.from_numpy(target).to(self.device_)
        modes = [(m, m.training) for m in self.net_.modules()]
        self.net_.eval()
        try:
            with torch.enable_grad():
                for i in range(len(target)):
                    args, kwargs = call_args(tree_map(lambda a, _: a[i:i + 1], inputs))
                    y = self.select_output(functional_call(self.net_, params, args, kwargs,
                                                           tie_weights=self._tied)).float()
                    if kind == "ce":
                        loss = F.cross_entropy(y.reshape(1, -1), t[i:i + 1])
                    elif kind == "mse":
                        loss = 0.5 * ((y - t[i:i + 1]) ** 2).sum()
                    else:
                        loss = (y * t[i:i + 1]).sum()
                    for n, g in zip(params, torch.autograd.grad(loss, list(params.values()), allow_unused=True)):
                        if g is not None:
                            totals[n] += g.double() ** 2
        finally:
            for m, flag in modes:
                m.training = flag
        return {n: v.cpu().numpy() for n, v in totals.items()}

    def _to_native(self, name: str, array: np.ndarray):
        import torch

        ref = self._params[name]
        t = torch.from_numpy(np.ascontiguousarray(array)).to(device=self.device_, dtype=ref.dtype)
        mask = _subnormals(t) if self.flush_subnormals else None
        return t if mask is None else t.masked_fill(mask, 0)  # a copy: the caller's array stays as it is

    def _original(self, name: str):
        return self._params[name].detach()

    def _stack(self, tensors):
        import torch

        return torch.stack(tensors)

    def _forward(self, subs: dict, inputs: Any, split: Split | None, live: Any) -> np.ndarray:
        from torch.func import functional_call

        tied = self._tied
        if split is not None and not _hooked(split):
            y = functional_call(split.suffix, subs, tuple(live), tie_weights=tied) if subs else split.suffix(*live)
        else:
            args, kwargs = call_args(inputs)
            with _replaying(split, live):
                y = functional_call(self.net_, subs, args, kwargs, tie_weights=tied) if subs else \
                    self.net_(*args, **kwargs)
        return as_numpy(self.select_output(y))

    def _forward_stacked(self, stacked: dict, inputs: Any, split: Split | None, live: Any) -> np.ndarray:
        from torch.func import functional_call, vmap

        hooked = _hooked(split)
        module, (args, kwargs) = (split.suffix, (tuple(live), {})) if split is not None and not hooked else \
            (self.net_, call_args(inputs))
        y = self._folded_forward(module, stacked, args, kwargs) \
            if self.fold_population and self.fold_error_ is None and not hooked else None
        if y is None and hooked and split.info.get("vmap_error"):
            y = self._stacked_loop(stacked, inputs, split, live)
        if y is None:
            tied = self._tied

            def one(p, a, kw):
                return self.select_output(functional_call(module, p, a, kw, tie_weights=tied))

            try:
                with _replaying(split, live):
                    y = vmap(one, in_dims=(0, None, None))(stacked, args, kwargs)
            except Exception as exc:
                if not hooked:
                    raise
                # e.g. ``h += residual`` into a replayed (unbatched) output: this cut loops, vmap stays
                split.info["vmap_error"] = f"{type(exc).__name__}: {exc}"
                y = self._stacked_loop(stacked, inputs, split, live)
        return as_numpy(y)

    def _stacked_loop(self, stacked: dict, inputs: Any, split: Split, live: Any):
        import torch

        p = next(iter(stacked.values())).shape[0]
        self.stats_["loop_forwards"] += p
        return torch.from_numpy(np.stack([self._forward({k: v[i] for k, v in stacked.items()}, inputs, split, live)
                                          for i in range(p)]))

    def _select_stacked(self, y, p: int):
        """The selected output of every candidate from the folded forward's output structure (each
        tensor in it has a leading candidate axis)."""
        import torch

        if isinstance(y, torch.Tensor) or not callable(self.output) or isinstance(self.output, (str, int)):
            return self.select_output(y)  # a key or an index picks the stacked entry at once
        return torch.stack([self.select_output(tree_map(lambda t, _: t[i] if isinstance(t, torch.Tensor) else t, y))
                            for i in range(p)])

    def _folded_forward(self, module, stacked: dict, args: tuple, kwargs: dict):
        """The population through the folded interpreter, or None (and ``fold_error_`` set) where the
        graph cannot be traced or run that way, or disagrees with one-by-one forwards on its first use."""
        import torch
        from torch.func import functional_call

        from ._torch_fx import Part
        from ._torch_population import PopulationInterpreter

        p = next(iter(stacked.values())).shape[0]
        known = self._folders.get(id(module))
        checked = known is not None and known[0] is module
        try:
            if checked:
                folder = known[1]
            else:
                folder = PopulationInterpreter(module if isinstance(module, Part) else self._whole())
            y = self._select_stacked(folder.run(stacked, args, p, kwargs), p)
        except Exception as exc:  # an op without a batching rule, a graph fx cannot trace
            self.fold_error_ = f"{type(exc).__name__}: {exc}"
            return None
        if not checked:  # first use of this graph: candidates 0 and P-1 must match one-by-one forwards
            for i in {0, p - 1}:
                ref = self.select_output(functional_call(module, {k: v[i] for k, v in stacked.items()}, args,
                                                         kwargs, tie_weights=self._tied))
                scale = max(float(ref.abs().max()), 1.0) if ref.is_floating_point() else 1.0
                tol = 1e-3 if self.autocast_dtype_ is None else REDUCED_RTOL
                if ref.shape != y[i].shape or float((ref.double() - y[i].double()).abs().max()) > tol * scale:
                    self.fold_error_ = "the folded population forward disagrees with one-by-one forwards"
                    return None
            self._folders[id(module)] = (module, folder)
        self.stats_["folded_calls"] += 1
        return y

    @staticmethod
    def _flush(params) -> int:
        """Zero the subnormal values of ``params`` (the private scoring copy's) in place; how many."""
        import torch

        total = 0
        with torch.no_grad():
            for p in params:
                mask = _subnormals(p)
                if mask is not None:
                    p.masked_fill_(mask, 0)
                    total += int(mask.sum())
        return total

    def _whole(self):
        """The traced model as a ``_torch_fx.Part`` (what the folded population forward walks)."""
        from ._torch_fx import Part

        if self._whole_part is None:
            traced = self._trace()
            self._whole_part = Part.whole(traced, traced.root)
        return self._whole_part

    def _trace(self):
        """The model's ``torch.fx`` graph for the call the scoring data makes, traced once with the
        data's first sample and first two as examples (``_torch_fx.trace``); raises what tracing the
        top-level forward raised. ``traced_leaves_``: modules that run as one node, and why."""
        import torch

        from . import _torch_fx

        if self._traced is None:
            try:
                n = self.num_samples
                examples = [call_args(self._native_inputs(self._data.take(np.array(idx)).inputs))
                            for idx in ([0], [0, min(1, n - 1)])]
                with torch.no_grad():
                    self._traced = _torch_fx.trace(self.net_, examples)
                self.traced_leaves_ = dict(self._traced.leaves)
            except Exception as exc:  # control flow on values in the top-level forward, unsupported ops
                self._traced = exc
        if isinstance(self._traced, Exception):
            raise self._traced
        return self._traced

    def _on_accelerator(self) -> bool:
        return self.device_.type != "cpu"

    def _activation_bytes_per_sample(self) -> int:
        """Bytes of every leaf module's output for one sample (bounds a vmapped call's memory)."""
        total = [0]

        def hook(_m, _i, out):
            if hasattr(out, "numel"):
                total[0] += out.numel() * out.element_size()

        leaves = [m for m in self.net_.modules() if not list(m.children())]
        handles = [m.register_forward_hook(hook) for m in leaves]
        args, kwargs = call_args(self._probe_inputs())
        try:
            self.net_(*args, **kwargs)
        finally:
            for h in handles:
                h.remove()
        return 2 * total[0]  # functional ops between modules are not hooked

    def _working_bytes_per_sample(self) -> int:
        """Twice the most tensor bytes alive at once in the traced forward of one sample (values are
        freed after their last use, as in eager PyTorch); the sum of all activations where the
        model cannot be traced."""
        if self._working is None:
            try:
                args, kwargs = call_args(self._probe_inputs())
                self._working = 2 * self._whole().peak_bytes(*args, **kwargs) // max(self.probe_samples, 1)
            except Exception:  # noqa: BLE001 - untraceable: the conservative bound
                self._working = self._activation_bytes()
        return self._working

    def _make_split(self, changed: tuple) -> Split | None:
        """The cut for ``changed``: through the fx graph where the model traces, else by module hooks
        (``_torch_hooks``); each checked once on the probe sample against full forwards, with the
        original weights and with the changed layers perturbed. Raises why neither can be used."""
        ids = {id(self._params[n]) for n in changed}
        reasons = []
        for path in (("fx", "hooks") if self.prefix_path == "auto" else (self.prefix_path,)):
            try:
                split = self._fx_split(changed, ids) if path == "fx" else self._hook_split(changed, ids)
            except Exception as exc:  # noqa: BLE001 - this path cannot cut here: try the next
                reasons.append(f"{path}: {type(exc).__name__}: {exc}")
                continue
            if split is None:  # nothing before the changed layers: no cut saves anything
                return None
            why = self._cut_disagrees(split)
            if why is None:
                split.info.update(path=path, checked=True, **({"fx_error": reasons[0]} if reasons else {}))
                self.prefix_paths_[changed] = path
                return split
            reasons.append(f"{path}: {why}")
        raise RuntimeError("; ".join(reasons))

    def _fx_split(self, changed: tuple, ids: set) -> Split | None:
        from . import _torch_fx

        traced = self._trace()
        parts = _torch_fx.split(traced, traced.root, ids)
        if parts is None:
            return None
        prefix_gm, suffix_gm, n_live = parts

        def prefix(inputs):
            args, kwargs = call_args(inputs)
            return prefix_gm(*args, **kwargs)

        return Split(changed, prefix, suffix_gm, {"live": n_live})

    def _hook_split(self, changed: tuple, ids: set) -> Split | None:
        from ._torch_hooks import HookCut, call_order

        if self._calls is None:
            self._calls = call_order(self.net_, *call_args(self._probe_inputs()))
        cut = HookCut(self.net_, self._calls, ids)
        if not cut:
            return None

        def prefix(inputs):
            return cut.capture(*call_args(inputs))

        return Split(changed, prefix, cut, {"live": len(cut.skipped), "first": cut.first.name})

    def _cut_disagrees(self, split: Split) -> str | None:
        """Why prefix + suffix do not reproduce full forwards on the probe sample (None: they do),
        with the original weights and with the changed layers' weights perturbed (a module that
        reads weights it does not own would keep stale outputs)."""
        if not self._split_agrees(split):
            return "prefix + suffix disagree with the full forward"
        x = self._probe_inputs()
        gen = np.random.default_rng(0)
        subs = {}
        for n in split.changed:
            w = self._params[n].detach()
            noise = gen.standard_normal(tuple(w.shape)).astype(np.float32)
            subs[n] = w * 1.5 + float(w.float().std().nan_to_num() + 1e-3) * self._to_native(n, noise)
        whole = np.asarray(self._forward(subs, x, None, None), dtype=np.float64)
        parts = np.asarray(self._forward(subs, x, split, split.prefix(x)), dtype=np.float64)
        scale = max(float(np.abs(whole).max()), 1.0)
        if whole.shape != parts.shape or not np.abs(whole - parts).max() <= self.split_rtol * scale:
            return "prefix + suffix disagree with the full forward once the changed layers change"
        return None

    def _live_nbytes(self, live) -> int:
        import torch

        return sum(t.numel() * t.element_size() for t in torch.utils._pytree.tree_leaves(live)
                   if isinstance(t, torch.Tensor))

    def close(self) -> None:
        self._folders.clear()
        self._close_scoring()


wsx_backends, wsx_backend_for = backend_hooks(TorchBackend)
