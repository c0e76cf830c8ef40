"""Built-in CAM methods; importing this package registers each of them.

Registration follows import order (alphabetical here); it is the order of ``list_methods()``, the
CLI and the docs table.
"""

from . import (
    ablationcam,
    cam,
    counterfactual,
    eigencam,
    eigengradcam,
    faster_scorecam,
    gradcam,
    gradcampp,
    guided_backprop,
    guided_gradcam,
    hirescam,
    iscam,
    layercam,
    scorecam,
    smoothgradcampp,
    sscam,
    xgradcam,
)
