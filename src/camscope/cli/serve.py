"""``camscope serve``: a local web viewer of CAM maps with a REST API, or a blind human study.

The viewer explains an image (dropped, picked, a demo photo or a URL the server fetches) with
several methods side by side, at any layer, for any class; opacity and colour map change in the
browser. The REST API (OpenAPI at /docs) serves the same maps to programs. With --study the server
runs a human study instead (see docs/serve.md) and appends every answer to DIR/answers.csv.

The server listens on 127.0.0.1 unless --host says otherwise; it holds the models in memory and
runs one request at a time through each model. It refuses changes sent from other sites' pages,
requests over its pass budget (--max-passes) and bodies over its caps; it does not authenticate
anyone: do not expose it to a network without a proxy that does (docs/serve.md, "Safety").
"""

from __future__ import annotations

import argparse
import ipaddress
import socket
from typing import Any

from ..errors import UsageError
from . import options, values
from ._common import command_parser, echo, warn
from .options import DEFAULT_MODEL

STUDY_KINDS = ("class-discrimination", "trust")

_HELP = "a local web viewer and REST API (or a human study with --study)"
_EPILOG = """\
examples:
  camscope serve                                   # http://127.0.0.1:8000/, the default model
  camscope serve --model resnet50 --model runs/cats --port 8080
  camscope serve --port 0 --no-url                 # a free port; no fetching of image URLs
  camscope serve --study class-discrimination --data builtin:40 --methods gradcam,scorecam --out out/study1
  camscope serve --study trust --model runs/a --model runs/b --data photos/ --methods gradcam --out out/trust
  camscope study summarize out/study1
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = command_parser(subparsers, "serve", _HELP, __doc__, _EPILOG)
    add = parser.add_argument
    options.add(
        parser,
        "models",
        models={
            "help": "a model to offer, repeatable: a timm/torchvision name, module:factory or a "
            f"run folder of `camscope train` (the built-in {DEFAULT_MODEL} is always offered in "
            "the viewer)"
        },
    )
    add("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    add("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    add("--no-url", action="store_true", help="do not fetch image URLs on the server")
    add(
        "--max-upload-mb",
        type=options.positive_float,
        default=20.0,
        metavar="MB",
        help="largest upload accepted, answered 413 above (default 20)",
    )
    add(
        "--max-passes",
        type=options.positive_int,
        default=None,
        metavar="N",
        help="model passes per image one request may add, estimated from the methods' costs "
        "(`camscope methods`; default: the budget of `camscope explain -m all`); SS-CAM at the "
        "last layer of EfficientNet-Lite0 needs 44801",
    )
    add(
        "--cache-mb",
        type=options.non_negative_float,
        default=512.0,
        metavar="MB",
        help="memory for maps and inputs kept between requests (default 512; 0 = keep nothing)",
    )
    # --multilabel: the --model models; the built-in default stays a softmax
    options.add(parser, "max_pixels", "device", "multilabel", device={"help": "where models run"})
    study = parser.add_argument_group("human study (instead of the viewer)")
    study.add_argument("--study", choices=STUDY_KINDS, default=None, help="the kind of study")
    options.add(
        study,
        "data",
        "method",
        "layer",
        "out",
        "seed",
        "limit",
        data={
            "help": "builtin:N (its two-object images for class-discrimination), annotations "
            "(VOC, COCO, CSV) or, for trust, a folder of images"
        },
        method={"help": "comma-separated methods to compare (default gradcam)"},
        layer={"help": "layer (default auto)"},
        out={"help": "study folder"},
        seed={"default": None, "help": "seed of the trial order (default: drawn, recorded)"},
        limit={"help": "use at most N images"},
    )
    return parser


def run(args: argparse.Namespace) -> int:
    from ..models.recipe import choose_device
    from ..serve.server import serve

    models = values.split_list(args.model)
    device = str(choose_device(args.device))
    sock = _bind(args.host, args.port)
    if args.study:
        app = _study_app(args, models, device)
    else:
        from ..core.cost import DEFAULT_PASS_BUDGET
        from ..io import DEFAULT_MAX_PIXELS
        from ..serve.viewer.app import ServeConfig, create_app
        from ..serve.viewer.pool import ModelPool

        offered = [*models, DEFAULT_MODEL] if DEFAULT_MODEL not in models else models
        multilabel = models if args.multilabel else []
        pool = ModelPool(offered, device=device, multilabel=multilabel)
        for name in models or [DEFAULT_MODEL]:
            pool.get(name)  # a bad model name fails now, not at the first request
        config = ServeConfig(
            models=pool.names,
            device=device,
            allow_url=not args.no_url,
            max_upload_bytes=int(args.max_upload_mb * 2**20),
            max_pixels=args.max_pixels or DEFAULT_MAX_PIXELS,
            max_passes=args.max_passes or DEFAULT_PASS_BUDGET,
            map_bytes=int(args.cache_mb * 2**20 * 3 / 4),
            input_bytes=int(args.cache_mb * 2**20 / 4),
        )
        app = create_app(config, pool=pool)
    stop = app.state.jobs.stop_all
    host, port = sock.getsockname()[:2]
    address = f"http://{_reachable(host)}:{port}/"
    echo(f"camscope serve: {address}  (API docs: {address}docs; Ctrl+C stops)")
    if _is_loopback(host):
        from ..serve.guards import LoopbackHosts, allowed_hosts

        app = LoopbackHosts(app, allowed_hosts(host))  # no DNS rebinding from a page elsewhere
    else:
        warn(
            f"camscope serve: listening on {host}: anyone who can reach this machine can use it "
            "(there is no login; put a proxy that authenticates in front of it)"
        )
    import sys

    sys.stdout.flush()
    serve(app, sock, stop)
    return 0


def _bind(host: str, port: int) -> socket.socket:
    if not 0 <= port <= 65535:
        raise UsageError(f"--port must be 0..65535; got {port}")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise UsageError(
            f"cannot listen on {host}:{port} ({err.strerror}); pick another --port (0 = any free "
            "one) or --host"
        ) from None
    sock.listen(128)
    return sock


def _reachable(host: str) -> str:
    """The address to print for a listening address: the wildcard ones are reached through
    loopback on this machine (0.0.0.0 -> 127.0.0.1, :: -> [::1])."""
    from ..serve.guards import url_host

    if host in ("0.0.0.0", "::"):
        return "127.0.0.1" if host == "0.0.0.0" else "[::1]"
    return url_host(host)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _study_app(args: argparse.Namespace, models: list[str], device: str) -> Any:
    from ..serve.study.app import create_study_app
    from ..serve.study.session import StudyOptions, prepare_study
    from ..serve.viewer.pool import ModelPool

    if not args.data or args.out is None:
        raise UsageError("--study needs --data and --out (the study folder)")
    options = StudyOptions(
        kind=args.study,
        methods=args.method,
        models=models or [DEFAULT_MODEL],
        layer=",".join(values.split_list(args.layer)) or "auto",
        **values.same_named(args, "data seed limit max_pixels"),
    )
    multilabel = options.models if args.multilabel else []
    pool = ModelPool(options.models, device=device, multilabel=multilabel)
    study = prepare_study(options, args.out, pool=pool)
    echo(
        f"camscope serve: {study.kind} study, {len(study.trials)} trials per participant, "
        f"answers in {study.answers_path}"
    )
    return create_study_app(study)
