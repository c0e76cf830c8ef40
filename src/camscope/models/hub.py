"""Pretrained timm and torchvision weights without waiting on a network that is not there.

``timm.create_model(name, pretrained=True)`` asks the Hugging Face Hub for the weights even when
they are cached, and without a network its HTTP client retries for about 50 s before failing.
:func:`local_timm_weights` looks in the local caches first (the Hugging Face hub cache for
``hf_hub_id`` weights, torch hub's ``checkpoints`` folder for URL weights); a cached file is loaded
directly, with no network access at all. When nothing is cached, :func:`hub_reachable` tries one
TCP connection (3 s timeout, through the configured HTTPS proxy if there is one; ``HF_HUB_OFFLINE``
means no) before the download starts, so an offline machine fails in seconds with a message
that says how to go on without the download. torchvision's weights are looked up the same way
(:func:`local_torchvision_weights`: torch hub's ``checkpoints`` folder, where torchvision saves
them) before a download is tried (:func:`require_torchvision_weights`).
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path
from urllib.parse import urlparse

log = logging.getLogger(__name__)

_HF_FILES = ("model.safetensors", "pytorch_model.bin", "open_clip_model.safetensors")
_TIMEOUT = 3.0


def _pretrained_cfg(name: str) -> object | None:
    try:
        from timm.models import get_pretrained_cfg

        return get_pretrained_cfg(name)
    except Exception:  # unknown tag or timm without the function: timm itself will say why
        return None


def _hf_cache_dir() -> str | None:
    try:
        from huggingface_hub import constants

        return str(constants.HF_HUB_CACHE)
    except ImportError:
        return None


def _from_hf_cache(repo: str, filenames: tuple[str, ...]) -> str | None:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    repo_id, _, revision = repo.partition("@")
    for filename in filenames:
        found = try_to_load_from_cache(
            repo_id, filename, cache_dir=_hf_cache_dir(), revision=revision or None
        )
        if isinstance(found, str) and Path(found).is_file():
            return found
    return None


def local_timm_weights(name: str) -> str | None:
    """The cached weights file timm would download for ``name`` (``arch[.tag]`` or
    ``hf-hub:owner/repo``), or None when it is not cached."""
    if name.startswith(("hf-hub:", "hf_hub:")):
        repo = name.split(":", 1)[1]
        if _from_hf_cache(repo, ("config.json",)) is None:
            return None
        return _from_hf_cache(repo, _HF_FILES)
    cfg = _pretrained_cfg(name)
    if cfg is None:
        return None
    hub_id = getattr(cfg, "hf_hub_id", None)
    if hub_id:
        custom = getattr(cfg, "hf_hub_filename", None)
        found = _from_hf_cache(str(hub_id), (custom,) if custom else _HF_FILES)
        if found is not None:
            return found
    url = getattr(cfg, "url", None)
    if url:
        import torch.hub

        cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(str(url)).path).name
        if cached.is_file():
            return str(cached)
    return None


def timm_weights_host(name: str) -> str:
    """The URL the weights of ``name`` would come from (the Hub unless only a URL is known)."""
    cfg = None if name.startswith(("hf-hub:", "hf_hub:")) else _pretrained_cfg(name)
    url = getattr(cfg, "url", None) if cfg is not None else None
    if cfg is not None and not getattr(cfg, "hf_hub_id", None) and url:
        return str(url)
    try:
        from huggingface_hub import constants

        return str(constants.ENDPOINT)
    except ImportError:
        return "https://huggingface.co"


def hub_reachable(url: str, timeout: float = _TIMEOUT) -> bool:
    """Whether a TCP connection to ``url``'s host (or the HTTPS proxy) opens within ``timeout``."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return False
    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    target = urlparse(proxy if proxy else url)
    host = target.hostname
    if not host:
        return True  # nothing to test: let the download say what is wrong
    port = target.port or (443 if target.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError as err:
        log.debug("no connection to %s:%s (%s)", host, port, err)
        return False


def local_torchvision_weights(weights: object) -> str | None:
    """The cached file of a torchvision weights enum value (torch hub's ``checkpoints`` folder,
    where ``weights.get_state_dict()`` saves its download), or None when it is not cached."""
    url = getattr(weights, "url", None)
    if not url:
        return None
    import torch.hub

    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(str(url)).path).name
    return str(cached) if cached.is_file() else None


def require_torchvision_weights(name: str, weights: object, no_download: str) -> None:
    """Raise :class:`~camscope.errors.ModelLoadError` at once when the weights of torchvision
    model ``name`` are neither cached nor downloadable (their host does not answer);
    ``no_download`` says how to go on without them."""
    from ..errors import ModelLoadError

    if local_torchvision_weights(weights) is not None:
        return
    url = str(getattr(weights, "url", "") or "https://download.pytorch.org")
    if not hub_reachable(url):
        raise ModelLoadError(
            f"the pretrained weights of torchvision model {name!r} ({weights}) are not in the "
            f"local cache ({Path(urlparse(url).path).name} under "
            f"{_torch_checkpoints()}) and {urlparse(url).hostname} cannot be reached; "
            f"{no_download}"
        )


def _torch_checkpoints() -> str:
    import torch.hub

    return str(Path(torch.hub.get_dir()) / "checkpoints")
