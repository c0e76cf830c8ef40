"""Training the classifiers camscope explains: ``camscope train`` and its Python API.

* :mod:`.config`: :class:`TrainConfig`, every option of a run;
* :mod:`.run`: :func:`train` (a whole run into its run folder) and :func:`resume_config`;
* :mod:`.data`: ``--data`` read by :func:`camscope.data.read.read_data` (class folders,
  CIFAR-10/100, the built-in set's training stream...), with the seeded stratified validation split;
* :mod:`.transforms`: augmentation, the evaluation resize and the collate that skips corrupt files;
* :mod:`.loop` (one epoch, the hot path), :mod:`.epochs` (the epoch loop), :mod:`.optim`
  (AdamW/SGD, warm-up + cosine), :mod:`.checkpoint` (``last.ckpt``, ``model.safetensors``),
  :mod:`.distributed` (torch DDP under ``torchrun`` or ``devices=N``), :mod:`.pretrained`
  (fine-tuning starts, never a download), :mod:`.report` and :mod:`.result` (the run folder's
  files), :mod:`.grids` (``explain=N``: Grad-CAM at the first, middle and last layer).

A run folder is a model: ``camscope.load_model(run_dir)`` (:mod:`camscope.models.run_folder`).
The architectures themselves live in :mod:`camscope.models.architectures`.

This package may import :mod:`camscope.errors`, ``core``, ``methods``, ``perturbation``, ``models``,
``io``, ``viz``, ``metrics`` and ``data``; only the CLI imports it.

Example:
    >>> from camscope.training import TrainConfig, train
    >>> result = train(TrainConfig(data="builtin:400", arch="gapnet", out="runs/gap", epochs=5))  # doctest: +SKIP
    >>> result.best_val_acc, result.out  # doctest: +SKIP
"""

from .config import TrainConfig
from .result import TrainResult
from .run import resume_config, train

__all__ = ["TrainConfig", "TrainResult", "resume_config", "train"]
