"""Built-in CAM methods; importing this package registers each of them.

Order here is the order of ``list_methods()``, the CLI and the docs table.
"""

from . import (  # noqa: F401
    cam,
    counterfactual,
    eigencam,
    eigengradcam,
    gradcam,
    gradcampp,
    guided_backprop,
    guided_gradcam,
    hirescam,
    layercam,
    xgradcam,
)
