"""The engine: one forward and one backward pass, and everything a CAM method reads from them.

* :mod:`.engine`: :func:`explain`, its modes and the no-side-effects guard; :mod:`.passes`: the
  shared forward and backward and the guided pass; :mod:`.assemble`: the methods' maps, what was
  skipped and why, warnings; :mod:`.concurrency`: the per-model lock and hooks scoped to their
  own call; :mod:`.cost`: passes per image before a run;
* :mod:`.context` / :mod:`.result`: the :class:`LayerContext` a method sees and the
  :class:`Explanation` ``explain`` returns;
* :mod:`.registry`: ``@register_method`` and :class:`MethodSpec`;
* :mod:`.layers`, :mod:`.families`, :mod:`.layer_table`, :mod:`.reshape`: which layer, and how its
  output becomes a ``(B, C, h, w)`` map;
* :mod:`.targets`, :mod:`.segmentation`: what is explained;
* :mod:`.ops`, :mod:`.smoothing`: map arithmetic and test-time augmentation;
* :mod:`.precision`: the forward passes under autocast (``precision="bf16"``);
* :mod:`.unsupported`: TorchScript / ONNX models, refused with advice.

Core imports :mod:`camscope.errors` and, in :mod:`.engine` alone, the method catalogue
(:mod:`camscope.methods`, which registers the built-in methods); it never imports models, data,
evaluation, io, viz or the CLI. Methods import :mod:`.context` and :mod:`.registry`, never the
engine.
"""
