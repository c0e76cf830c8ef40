"""Training the classifiers camscope explains: ``camscope train`` and its Python API, into a run
folder that is a model (``camscope.load_model(run_dir)``, :mod:`camscope.models.run_folder`);
the architectures themselves live in :mod:`camscope.models.architectures`. What each module
holds: the ``training/`` paragraph of docs/architecture.md.

Example:
    >>> from camscope.training import TrainConfig, train
    >>> result = train(TrainConfig(data="builtin:400", arch="gapnet", out="runs/gap", epochs=5))  # doctest: +SKIP
    >>> result.best_val_acc, result.out  # doctest: +SKIP
"""

from .config import TrainConfig
from .result import TrainResult
from .run import resume_config, train

__all__ = ["TrainConfig", "TrainResult", "resume_config", "train"]
