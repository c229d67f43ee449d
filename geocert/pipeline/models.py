"""Users' own models: one loader and one output check for every plugin.

``--model`` (or ``--checkpoint``) accepts

(a) a geocert checkpoint (``torch.save`` of a plugin's own format; the plugin passes its ``native`` loader),
(b) a TorchScript file (``torch.jit.save``), or
(c) ``package.module:factory`` naming a Python callable that returns the model (an ``nn.Module`` or any
    callable batch → output); a ``package.module:attr`` that already is a model is used as it is.

:func:`labels_from_output` turns what a model returned into integer labels ``[B, *components]``, checking
the documented contract with one-line :class:`ModelError` messages: a tensor, the right shape (logits with a
class axis, or labels), finite logits, labels inside ``[0, num_classes)``.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import re
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from geocert.errors import GeocertError, InputError

__all__ = ["ModelError", "LoadedModel", "load_model", "model_identity", "is_torchscript", "labels_from_output",
           "timed"]

_FACTORY = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")


class ModelError(GeocertError):
    """A user's model that breaks the contract (fails to run, wrong output shape, NaN logits, bad labels)."""


@dataclasses.dataclass
class LoadedModel:
    model: Any
    """The callable model (in eval mode, on the requested device when it is an ``nn.Module``)."""
    kind: str
    """``checkpoint`` (geocert's own), ``torchscript`` or ``factory``."""
    source: str
    """What the user gave (path or ``module:factory``), for messages."""
    meta: dict = dataclasses.field(default_factory=dict)
    """What the native loader returned besides the model (e.g. the checkpoint's training config)."""


def model_identity(spec: str | os.PathLike | None) -> str | None:
    """SHA-256 of a model file, or of a folder's file names and contents (e.g. a diffusers folder), for resume
    keys: a retrained model in the same place is a different model. None for anything else (a factory)."""
    import hashlib

    if spec is None:
        return None
    p = Path(spec)
    files = [p] if p.is_file() else sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else []
    if not files:
        return None
    h = hashlib.sha256()
    for f in files:
        h.update(str(f.relative_to(p) if f != p else f.name).encode())
        with open(f, "rb") as fh:
            for chunk in iter(lambda fh=fh: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def is_torchscript(path: str | os.PathLike) -> bool:
    """A ``torch.jit.save`` archive (a zip holding compiled ``code/``), as opposed to a ``torch.save`` file."""
    try:
        with zipfile.ZipFile(path) as zf:
            return any("/code/" in n for n in zf.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def _load_factory(spec: str) -> Any:
    module, _, attr = spec.partition(":")
    try:
        obj = importlib.import_module(module)
    except Exception as exc:
        raise InputError(f"{spec}: cannot import module {module!r} ({type(exc).__name__}: {exc})") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise InputError(f"{spec}: module {module!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    import torch

    if isinstance(obj, torch.nn.Module):
        return obj
    if not callable(obj):
        raise InputError(f"{spec}: {attr!r} is not callable (expected a factory returning the model)")
    try:
        model = obj()
    except Exception as exc:
        raise InputError(f"{spec}: the factory failed ({type(exc).__name__}: {' '.join(str(exc).split())[:160]})") \
            from None
    if not callable(model):
        raise InputError(f"{spec}: the factory returned a {type(model).__name__}, not a model")
    return model


def load_model(spec: str | os.PathLike, *, device: Any = "cpu",
               native: Callable[[Path], tuple[Any, dict]] | None = None, option: str = "--model") -> LoadedModel:
    """Load a model given as a geocert checkpoint, a TorchScript file or ``module:factory`` (see module doc).

    Args:
        spec: the path or ``package.module:factory``.
        device: where to put the model (``nn.Module`` / ScriptModule).
        native: the plugin's loader of its own checkpoints, ``path -> (model, meta)``; ``None``: only
            TorchScript files are accepted as paths.
        option: the option's name, for messages.
    """
    import torch

    text = os.fspath(spec)
    path = Path(text)
    if path.is_file():
        if is_torchscript(path):
            import warnings

            try:
                with warnings.catch_warnings():  # TorchScript is a supported input format, deprecated or not
                    warnings.filterwarnings("ignore", message=r".*torch\.jit.* is deprecated", category=DeprecationWarning)
                    model = torch.jit.load(str(path), map_location="cpu")
            except Exception as exc:
                raise InputError(f"{path}: not a loadable TorchScript model ({type(exc).__name__}: "
                                 f"{' '.join(str(exc).split())[:120]})") from None
            loaded = LoadedModel(model, "torchscript", text)
        elif native is not None:
            model, meta = native(path)
            loaded = LoadedModel(model, "checkpoint", text, dict(meta or {}))
        else:
            raise InputError(f"{path}: not a TorchScript file (save one with torch.jit.save, or give "
                             f"{option} package.module:factory)")
    elif path.is_dir():
        raise InputError(f"{path}: is a folder; {option} takes a model file or package.module:factory")
    elif _FACTORY.match(text) and not text.endswith((".pt", ".pth", ".ckpt")):
        loaded = LoadedModel(_load_factory(text), "factory", text)
    else:
        raise InputError(f"{path}: model file not found ({option} takes a geocert checkpoint, a TorchScript "
                         "file or package.module:factory)")
    m = loaded.model
    if isinstance(m, torch.nn.Module):
        m.eval()
        m.to(device)
    return loaded


def labels_from_output(out: Any, *, batch: int, components: tuple[int, ...], num_classes: int, source: str,
                       class_axis: int = -1, what: str = "components") -> Any:
    """Integer labels ``[B, *components]`` from a model's output, checking the contract.

    Accepted: logits / probabilities with a class axis (``class_axis`` -1: ``[B, *components, C]``; 1:
    ``[B, C, *components]``) with ``C == num_classes``, or integer labels ``[B, *components]``.

    Raises :class:`ModelError` naming ``source`` for anything else, for NaN / inf logits, and for labels
    outside ``[0, num_classes)``."""
    import torch

    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        out = out[0]  # models returning (logits, aux)
    if not isinstance(out, torch.Tensor):
        raise ModelError(f"{source}: the model must return a tensor, got {type(out).__name__}")
    shape = tuple(out.shape)
    label_shape = (batch, *components)
    if shape == label_shape and not out.dtype.is_floating_point:
        labels = out.long()
        if labels.numel():
            lo, hi = (int(v) for v in torch.aminmax(labels))
            if lo < 0 or hi >= num_classes:
                raise ModelError(f"{source}: the model returned labels outside 0..{num_classes - 1} "
                                 f"(min {lo}, max {hi})")
        return labels
    nd = len(label_shape) + 1
    ax = class_axis % nd
    expect = list(label_shape)
    expect.insert(ax, num_classes)
    if shape != tuple(expect):
        fmt = lambda s: "[" + ", ".join(str(v) for v in s) + "]"  # noqa: E731
        raise ModelError(f"{source}: the model must return logits {fmt(expect)} or integer labels "
                         f"{fmt(label_shape)} for these {what}, got {fmt(shape)} ({out.dtype})")
    if not out.dtype.is_floating_point:
        raise ModelError(f"{source}: logits must be floating point, got {out.dtype}")
    if not bool(torch.isfinite(out).all()):
        raise ModelError(f"{source}: the model returned NaN or infinite logits")
    # argmax over a contiguous class-last copy: ~5x faster on CPU than a strided argmax over a middle axis
    return out.argmax(ax) if ax == nd - 1 else out.movedim(ax, -1).contiguous().argmax(-1)


class timed:
    """Wrap a callable and add the wall time of its calls to ``seconds`` (the forward-pass time)."""

    def __init__(self, fn: Callable):
        self.fn = fn
        self.seconds = 0.0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        import time

        t0 = time.perf_counter()
        try:
            return self.fn(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - t0
