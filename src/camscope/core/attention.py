"""Attention probabilities of a vision transformer, in the autograd graph, scoped to one call.

The transformer methods (LeGrad, attention rollout, transformer attribution) read every block's
attention probabilities ``A = softmax(q k^T / sqrt(d))``, ``(B, heads, N, N)`` over all ``N``
tokens, and the gradient methods differentiate scores with respect to them. Common models do not
expose them: timm's ``Attention`` calls the fused ``scaled_dot_product_attention``, and
torchvision's ``EncoderBlock`` calls ``nn.MultiheadAttention`` with ``need_weights=False``.

Nothing on the model changes for this (no ``fused_attn`` flip, no patched ``forward``). A forward
hook on each attention module, which acts only in the caller's own passes
(:class:`~camscope.core.concurrency.PassScope`: a ``model(x)`` in another thread runs through
untouched), recomputes the module's output from its own weights with explicit probabilities
(q, k, v from its projection, its q/k norms, softmax, ``A @ v``, its output norm, gate and
projection), checks that the result equals what the module computed, and returns it, so that
everything after the attention depends on ``A`` in the graph. A module whose output cannot be
reproduced is refused with :class:`~camscope.errors.UnsupportedModelError`, never explained wrongly.
Where nothing before a block requires gradients (frozen parameters), its ``A`` becomes a leaf
of the graph: exact, because nothing upstream could carry a gradient to it anyway.

Supported: timm ``VisionTransformer`` with timm's standard ``Attention`` (ViT, DeiT, distilled
DeiT, register tokens) and torchvision's ``VisionTransformer`` (``vit_b_16`` ...). Refused, with
the reason: Swin (windowed attention: no attention over all tokens), timm models with other
attention modules (Eva/BEiT: rotary embeddings or relative position bias), Hugging Face models
and anything else.

Example:
    >>> layout = transformer_layout(model)  # doctest: +SKIP
    >>> run = record_attention(model, x, layout, range(len(layout.blocks)), grad=False)
    >>> run.probs[0].shape  # doctest: +SKIP
    torch.Size([1, 3, 197, 197])
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import UnsupportedModelError
from .concurrency import PassScope
from .layers import preserved_modes

TokenMap = Callable[[Tensor], Tensor]

#: What the attention methods accept, for error messages.
SUPPORTED = (
    "timm VisionTransformer models with timm's standard Attention (ViT, DeiT, distilled DeiT, "
    "register tokens) and torchvision's VisionTransformer (vit_b_16, ...)"
)


@dataclass(frozen=True)
class TransformerLayout:
    """Where a supported vision transformer keeps its blocks and how its head reads the tokens.

    Attributes:
        kind: ``"timm"`` or ``"torchvision"``.
        blocks: dotted names of the blocks, in order.
        attentions: dotted name of each block's attention module.
        prefix: tokens before the patch tokens (class, distillation, register tokens).
        readout: the token rows the head reads (``(0,)``: the class token; ``(0, 1)``: class and
            distillation tokens); empty when the head pools the patch tokens (mean of their rows).
    """

    kind: str
    blocks: tuple[str, ...]
    attentions: tuple[str, ...]
    prefix: int
    readout: tuple[int, ...]

    def block_of(self, layer: str) -> int | None:
        """Index of the block that is or contains the module ``layer``, or None."""
        for i, block in enumerate(self.blocks):
            if layer == block or layer.startswith(block + "."):
                return i
        return None


def _refuse(model: nn.Module, why: str) -> UnsupportedModelError:
    return UnsupportedModelError(
        f"{type(model).__name__} is not a vision transformer the attention methods support: "
        f"{why}. They support {SUPPORTED}; explain other models with the CAM methods "
        "(gradcam, scorecam, ...)"
    )


def _is_timm_attention(module: nn.Module) -> bool:
    cls = type(module)
    return cls.__name__ == "Attention" and cls.__module__.startswith("timm.")


def _attention_like(model: nn.Module) -> str | None:
    """A description of the first attention-like module, for the refusal message."""
    for name, module in model.named_modules():
        if "Attention" in type(module).__name__:
            return f"{name} is a {type(module).__module__}.{type(module).__name__}"
    return None


def transformer_layout(model: nn.Module) -> TransformerLayout:
    """The :class:`TransformerLayout` of a supported model, else :class:`UnsupportedModelError`."""
    cls, origin = type(model).__name__, type(model).__module__
    if "Swin" in cls or "swin" in origin:
        raise _refuse(
            model,
            "Swin's windowed attention mixes tokens within shifted local windows only, so "
            "there is no attention matrix over all tokens to roll out or differentiate",
        )
    prefix = getattr(model, "num_prefix_tokens", None)
    blocks = getattr(model, "blocks", None)
    if origin.startswith("timm.") and isinstance(prefix, int) and isinstance(blocks, nn.Sequential):
        names = tuple(f"blocks.{i}" for i in range(len(blocks)))
        for name, block in zip(names, blocks):
            attn = getattr(block, "attn", None)
            if not isinstance(attn, nn.Module) or not _is_timm_attention(attn):
                kind = "none" if attn is None else f"{type(attn).__module__}.{type(attn).__name__}"
                raise _refuse(
                    model,
                    f"block {name!r} has attention module {kind}, not timm's standard Attention "
                    "(rotary embeddings, relative position bias and fused blocks are not "
                    "recomputed)",
                )
        pool = str(getattr(model, "global_pool", "token"))
        readout: tuple[int, ...] = ()
        if pool == "token":
            readout = (0, 1) if getattr(model, "head_dist", None) is not None else (0,)
        return TransformerLayout("timm", names, tuple(f"{n}.attn" for n in names), prefix, readout)
    if origin.startswith("torchvision.models") and cls == "VisionTransformer":
        layers = model.get_submodule("encoder.layers")
        names = tuple(f"encoder.layers.{n}" for n, _ in layers.named_children())
        for name in names:
            if not isinstance(model.get_submodule(f"{name}.self_attention"), nn.MultiheadAttention):
                raise _refuse(model, f"block {name!r} has no nn.MultiheadAttention")
        return TransformerLayout(
            "torchvision", names, tuple(f"{n}.self_attention" for n in names), 1, (0,)
        )
    found = _attention_like(model)
    raise _refuse(
        model,
        f"camscope does not know its attention modules ({found})"
        if found
        else "it has no transformer blocks with attention (a CNN?)",
    )


def _in_graph(probs: Tensor) -> Tensor:
    """``probs`` itself, or a leaf that requires grad when recording and nothing upstream does."""
    if torch.is_grad_enabled() and not probs.requires_grad:
        return probs.detach().requires_grad_()
    return probs


def _timm_forward(m: nn.Module, x: Tensor) -> tuple[Tensor, Tensor]:
    """timm ``Attention.forward`` with explicit probabilities: ``(output, probs)``."""
    b, n, _ = x.shape
    heads, dim = int(m.num_heads), int(m.head_dim)  # type: ignore[arg-type]
    identity = nn.Identity()
    gate_layer = getattr(m, "gate", None)
    gate = gate_layer(x).sigmoid() if gate_layer is not None else None
    qkv = m.qkv(x).reshape(b, n, 3, heads, dim).permute(2, 0, 3, 1, 4)  # type: ignore[operator]
    q, k, v = qkv.unbind(0)
    q = getattr(m, "q_norm", identity)(q)
    k = getattr(m, "k_norm", identity)(k)
    probs = _in_graph(((q * float(m.scale)) @ k.transpose(-2, -1)).softmax(dim=-1))  # type: ignore[arg-type]
    out = (getattr(m, "attn_drop", identity)(probs) @ v).transpose(1, 2).reshape(b, n, heads * dim)
    out = getattr(m, "norm", identity)(out)
    if gate is not None:
        out = out * gate
    out = m.proj(out)  # type: ignore[operator]
    return getattr(m, "proj_drop", identity)(out), probs


def _mha_forward(m: nn.MultiheadAttention, q_in: Tensor, k_in: Tensor, v_in: Tensor) -> Any:
    """Batch-first ``nn.MultiheadAttention`` with explicit probabilities: ``(output, probs)``."""
    weight, bias = m.in_proj_weight, m.in_proj_bias
    e, heads = m.embed_dim, m.num_heads
    b, n, _ = q_in.shape
    parts = [
        F.linear(
            t, weight[i * e : (i + 1) * e], None if bias is None else bias[i * e : (i + 1) * e]
        )
        .reshape(b, t.shape[1], heads, e // heads)
        .transpose(1, 2)
        for i, t in enumerate((q_in, k_in, v_in))
    ]
    q, k, v = parts
    probs = _in_graph(((q * (e // heads) ** -0.5) @ k.transpose(-2, -1)).softmax(dim=-1))
    out = (probs @ v).transpose(1, 2).reshape(b, n, e)
    return m.out_proj(out), probs


def _check_mha(name: str, m: nn.MultiheadAttention, kwargs: dict[str, Any]) -> None:
    problems = [
        what
        for what, bad in (
            ("batch_first=False", not m.batch_first),
            ("separate key/value dimensions", not m._qkv_same_embed_dim),
            ("bias_k/bias_v", m.bias_k is not None or m.bias_v is not None),
            ("add_zero_attn", m.add_zero_attn),
            ("an attention or padding mask", any(kwargs.get(k) is not None for k in _MASKS)),
            ("is_causal", bool(kwargs.get("is_causal"))),
        )
        if bad
    ]
    if problems:
        raise UnsupportedModelError(
            f"attention module {name!r} uses {', '.join(problems)}, which the attention "
            "methods do not recompute"
        )


_MASKS = ("attn_mask", "key_padding_mask")


def _check_same(name: str, module: nn.Module, own: Tensor, new: Tensor) -> None:
    """Refuse a module whose output the recomputation does not reproduce."""
    own32, new32 = own.detach().float(), new.detach().float()
    # float32 rounding (fused kernels sum in another order): ~1e-6; half types: their epsilon
    tol = max(1e-4, 8 * torch.finfo(own.dtype).eps) * (1.0 + float(own32.abs().amax()))
    diff = float((own32 - new32).abs().amax()) if own.shape == new.shape else float("inf")
    if not diff <= tol:
        raise UnsupportedModelError(
            f"attention module {name!r} ({type(module).__name__}): its output could not be "
            f"reproduced from its weights (largest difference {diff:.3g}, allowed {tol:.3g}), so "
            "camscope does not know what it computes and the attention methods cannot run on it"
        )


@dataclass
class AttentionRun:
    """What :func:`record_attention` gave.

    Attributes:
        output: the model's output.
        probs: block index -> attention probabilities ``(B, heads, N, N)`` (model dtype, in the
            graph when recorded with ``grad=True``).
        logits: block index -> the model's head applied to that block's output tokens, first
            mapped by ``block_tokens`` (:func:`record_attention`), ``(B, classes)``.
    """

    output: Any
    probs: dict[int, Tensor] = field(default_factory=dict)
    logits: dict[int, Tensor] = field(default_factory=dict)


class _Hooks:
    """The scoped hooks of one recording: attention recomputation and block outputs."""

    def __init__(self, model: nn.Module, layout: TransformerLayout, run: AttentionRun) -> None:
        self.model, self.layout, self.run = model, layout, run
        self.scope = PassScope()

    def attention(self, index: int) -> Any:
        name = self.layout.attentions[index]
        torchvision = self.layout.kind == "torchvision"

        def hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> Any:
            if not self.scope.owns_pass():
                return None
            if torchvision:
                assert isinstance(module, nn.MultiheadAttention)
                _check_mha(name, module, kwargs)
                qkv = [*args, *(kwargs.get(k) for k in ("query", "key", "value")[len(args) :])]
                new, probs = _mha_forward(module, qkv[0], qkv[1], qkv[2])
                _check_same(name, module, out[0], new)
                result: Any = (new, out[1])
            else:
                if kwargs.get("attn_mask") is not None or kwargs.get("is_causal"):
                    raise UnsupportedModelError(
                        f"attention module {name!r} was called with an attention mask, which "
                        "the attention methods do not recompute"
                    )
                x = args[0] if args else kwargs["x"]
                new, probs = _timm_forward(module, x)
                _check_same(name, module, out, new)
                result = new
            self.run.probs[index] = probs
            return result

        return hook

    def block(self, index: int, tokens: TokenMap) -> Any:
        def hook(_m: nn.Module, _i: Any, out: Any) -> None:
            if not isinstance(out, Tensor) or out.ndim != 3:
                raise UnsupportedModelError(
                    f"block {self.layout.blocks[index]!r} does not return tokens "
                    "(batch, tokens, channels)"
                )
            self.run.logits[index] = head_logits(self.model, self.layout, tokens(out))

        return self.scope.hook(hook)

    @contextmanager
    def registered(self, blocks: Sequence[int], tokens: TokenMap | None) -> Iterator[None]:
        handles = []
        try:
            for i in blocks:
                attn = self.model.get_submodule(self.layout.attentions[i])
                handles.append(attn.register_forward_hook(self.attention(i), with_kwargs=True))
                if tokens is not None:
                    block = self.model.get_submodule(self.layout.blocks[i])
                    handles.append(block.register_forward_hook(self.block(i, tokens)))
            yield
        finally:
            for handle in handles:
                handle.remove()


def record_attention(
    model: nn.Module,
    x: Tensor,
    layout: TransformerLayout,
    blocks: Sequence[int],
    *,
    grad: bool,
    block_tokens: TokenMap | None = None,
) -> AttentionRun:
    """One eval-mode forward of ``x`` that records the attention probabilities of ``blocks``,
    in the graph when ``grad``. With ``block_tokens``, each of these blocks' output tokens are
    mapped by it and put through the model's head (:func:`head_logits`, LeGrad's layer scores),
    in the same eval-mode pass.

    Every module's mode is restored afterwards and the hooks are removed, also after an error;
    they act on this forward only. Attention dropout would make the probabilities random, hence
    eval mode.
    """
    run = AttentionRun(output=None)
    hooks = _Hooks(model, layout, run)
    wanted = list(blocks)
    with (
        preserved_modes(model),
        torch.set_grad_enabled(grad),
        hooks.registered(wanted, block_tokens),
        hooks.scope.active(),
    ):
        model.eval()
        run.output = model(x)
    missing = [layout.blocks[i] for i in wanted if i not in run.probs]
    if missing:
        raise UnsupportedModelError(
            f"the attention of block(s) {missing} did not run in the forward pass; the "
            "attention methods need every block to run once"
        )
    return run


def head_logits(model: nn.Module, layout: TransformerLayout, tokens: Tensor) -> Tensor:
    """The model's own head (final norm, pooling, classifier) applied to a token sequence
    ``(B, N, C)`` as if it were the last block's output: ``(B, classes)``."""
    if layout.kind == "timm":
        return model.forward_head(model.norm(tokens))  # type: ignore[operator]
    encoder = model.get_submodule("encoder")
    return model.heads(encoder.ln(tokens)[:, 0])  # type: ignore[operator]
