"""Models and the preprocessing they expect: ``load_model(name) -> (model, ModelSpec)``.

* :mod:`.loading`: names to models (the offline default, ``module:factory``, timm, torchvision,
  Hugging Face folders, whole pickled models), see :func:`load_model`;
* :mod:`.spec`: :class:`ModelSpec` (input size, mean/std, interpolation, class names);
* :mod:`.default`: the offline EfficientNet-Lite0 and why its preprocessing is what it is;
* :mod:`.checkpoints`: weights files (state dicts, safetensors, trusted pickles);
* :mod:`.hf`: Hugging Face ``transformers`` classifiers;
* :mod:`.hub`: timm weights from the local caches, and a quick network check before a download;
* :mod:`.architectures`, :mod:`.gapnet`: the classifiers ``camscope train`` builds (timm and
  torchvision families with a small-input stem, seed 004's no-pooling GapNet);
* :mod:`.run_folder`: a ``camscope train`` run folder loaded as a model;
* :mod:`.recipe`: the device (:func:`choose_device`), preprocessing overrides
  (:class:`SpecOverrides`) and :class:`ModelRecipe`, which every command loads its model with.

This package imports :mod:`camscope.core` (to refuse TorchScript/ONNX models) and
:mod:`camscope.errors`; nothing here runs the engine.
"""

from .checkpoints import map_state_dict_in_order
from .default import DEFAULT_MODEL
from .loading import load_model
from .recipe import LoadedModel, ModelRecipe, SpecOverrides, choose_device
from .spec import ModelSpec, imagenet_class_names, spec_for_model

__all__ = [
    "DEFAULT_MODEL",
    "LoadedModel",
    "ModelRecipe",
    "ModelSpec",
    "SpecOverrides",
    "choose_device",
    "imagenet_class_names",
    "load_model",
    "map_state_dict_in_order",
    "spec_for_model",
]
