"""Blind human studies of CAM maps, after the Grad-CAM paper's evaluations with people
(Selvaraju et al., ICCV 2017, Sec. 5): *class discrimination* and *trust*.

* **class-discrimination**: an image holds two objects of different classes; the participant sees
  one method's map for one of the two classes and picks which object it shows. Images: the
  two-object images of the built-in benchmark (``builtin:N``, :mod:`camscope.data.synthetic`) or
  of an annotation data set. The class explained for an object is the one of its accepted classes
  the model scores highest on the image.
* **trust**: two models (``--model A --model B``) predicted the same class for an image; the
  participant sees both models' maps of one method for that class, side by side, and picks the
  one they trust more, or "about the same" (the paper used a five-point scale; three choices
  here). Images: where both models' top-1 classes agree (same label, or same index when a model
  has no class names).

Trials are one per (image, object) and method (class discrimination) or per image and method
(trust). The list is fixed when the study folder is created and written to ``study.json`` with
the seed. Each participant sees every trial once, in an order shuffled with ``Random(f"{seed}/
{participant}")``; the answer options and the left/right sides are shuffled the same way per
trial. Method and model names never reach the page, nor do trial ids: the page gets a random
ticket per trial, valid for the session it was served to (below). ``answers.csv``
(:mod:`.answers`) gets one row per click; a restart reads it and each participant continues at
their first unanswered trial. ``ms`` (the time from showing the trial to the click, measured by
the page) must be a positive number of at most :data:`MAX_MS` (a day).

**Sessions: who may answer which trial.** A participant opens a session by typing a name
(``POST /api/study/session``) and gets a random token that only the study page reads (another
site's page can send requests to the server but cannot read its answers, so it never learns a
token). Each trial served to the session is handed out under a random ticket; an answer names its
session and its ticket, and is accepted only for a trial that this session was served. So a page
elsewhere cannot answer in a participant's name, nor answer trials the participant never saw (which
used to lock the participant out of them), and the tickets say nothing about the trial behind them
(the trial ids in ``study.json`` follow the data's order: with two methods, even ids were the first
method).

Sessions live in memory: after a restart the page opens a new one with the same name and the
participant goes on at their first unanswered trial. At most :data:`MAX_SESSIONS` are kept; the
least recently used goes first.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import random
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...data.dataset import LoadOptions
from ...errors import UsageError
from ...outputs import write_json
from ..viewer.service import Explainer, ExplainRequest, LazyImage, parse_methods
from .answers import AnswerLog
from .trials import StudyOptions, Trial, build_trials, study_images

if TYPE_CHECKING:
    from ..viewer.pool import ModelPool

log = logging.getLogger(__name__)

KINDS = ("class-discrimination", "trust")
QUESTIONS = {
    "class-discrimination": "Which of the two objects does the highlighted region show?",
    "trust": "Both models predicted the same class. Whose explanation do you trust more?",
}
TRUST_CHOICES = ("left", "right", "same")
MAX_MS = 24 * 3600 * 1000  # a day: a longer "time to answer" is no measurement


MAX_SESSIONS = 10_000


class SessionUnknown(UsageError):
    """The session token is not (or no longer) known to this server (answered 401)."""

    http_status = 401


@dataclass
class StudySession:
    """One participant's session: the trials served to it, by ticket."""

    participant: str
    tickets: dict[str, int] = field(default_factory=dict)  # ticket -> trial id
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ticket_for(self, trial_id: int) -> str:
        """The ticket under which ``trial_id`` is served (the same one when served again)."""
        with self.lock:
            ticket = next((t for t, served in self.tickets.items() if served == trial_id), None)
            if ticket is None:
                ticket = secrets.token_urlsafe(12)
                self.tickets[ticket] = trial_id
            return ticket

    def trial_of(self, ticket: str) -> int:
        """The trial served under ``ticket``; an unknown ticket is an error."""
        with self.lock:
            trial_id = self.tickets.get(str(ticket))
        if trial_id is None:
            raise UsageError(
                "this trial was not served to your session; reload the page to get your next trial"
            )
        return trial_id


class SessionBook:
    """The open sessions of one study server, by token."""

    def __init__(self) -> None:
        self._sessions: OrderedDict[str, StudySession] = OrderedDict()
        self._lock = threading.Lock()

    def open(self, participant: str) -> str:
        """A new session for ``participant``; returns its token."""
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._sessions[token] = StudySession(participant)
            while len(self._sessions) > MAX_SESSIONS:
                self._sessions.popitem(last=False)
        return token

    def get(self, token: str) -> StudySession:
        with self._lock:
            session = self._sessions.get(str(token))
            if session is None:
                raise SessionUnknown(
                    "your study session is not known to this server (it may have restarted); "
                    "enter your name again to continue where you were"
                )
            self._sessions.move_to_end(str(token))
            return session


@dataclass
class Study:
    """A prepared study: its plan (``study.json``), trials, image loaders, models and answers."""

    folder: Path
    plan: dict[str, Any]
    trials: list[Trial]
    images: dict[str, Any]
    explainer: Explainer
    sessions: SessionBook = field(default_factory=SessionBook)

    def __post_init__(self) -> None:
        self.kind: str = self.plan["kind"]
        self.seed = int(self.plan["seed"])
        self.models: list[str] = list(self.plan["models"])
        self.answers_path = self.folder / "answers.csv"
        self.log = AnswerLog(self.answers_path)

    def order(self, participant: str) -> list[int]:
        ids = [t.id for t in self.trials]
        random.Random(f"{self.seed}/{participant}").shuffle(ids)
        return ids

    def layout(self, participant: str, trial: Trial) -> tuple[list[str], list[str]]:
        """(option labels in display order, models left to right) for one participant."""
        rng = random.Random(f"{self.seed}/{participant}/{trial.id}")
        if self.kind == "trust":
            models = list(self.models)
            rng.shuffle(models)
            return list(TRUST_CHOICES), models
        labels = list(trial.labels)
        rng.shuffle(labels)
        return labels, [self.models[0]]

    def next_trial(self, participant: str) -> tuple[int, Trial] | None:
        """(position, trial) of the participant's first unanswered trial, or None when done."""
        done = self.log.answered(participant)
        for position, trial_id in enumerate(self.order(participant)):
            if trial_id not in done:
                return position, self.trials[trial_id]
        return None

    def pictures(self, participant: str, trial: Trial) -> list[str]:
        """Base64 PNG overlays of the trial, left to right (one per model shown)."""
        _, models = self.layout(participant, trial)
        out = []
        for model in models:
            index = self.models.index(model)
            request = ExplainRequest(
                model=model,
                methods=(trial.method,),
                layer=self.plan["layer"],
                target=str(trial.classes[index]),
                overlays=True,  # the study page shows the server's pictures
            )
            source = LazyImage(f"study:{trial.image}", self.images[trial.image])
            body = self.explainer.explain(request, source).body
            out.append(body["maps"][trial.method]["overlay_png"])
        return out

    def answer(
        self, participant: str, trial_id: int, choice: str, ms: float | None
    ) -> dict[str, str]:
        """Record one click; a second answer to the same trial, an unknown choice or a time that
        is not a positive number of at most :data:`MAX_MS` milliseconds is an error (``None``:
        not measured, left empty)."""
        if ms is not None and not (isinstance(ms, (int, float)) and 0 < ms <= MAX_MS):
            shown = ms if isinstance(ms, (int, float)) and math.isfinite(ms) else repr(ms)
            raise UsageError(
                f"ms must be the milliseconds from showing the trial to the click, a positive "
                f"number of at most {MAX_MS} (a day); got {shown}"
            )
        if not 0 <= trial_id < len(self.trials):
            raise UsageError(f"there is no trial {trial_id}")
        if trial_id in self.log.answered(participant):
            raise UsageError(f"trial {trial_id} is already answered by {participant!r}")
        trial = self.trials[trial_id]
        options, models = self.layout(participant, trial)
        if choice not in options:
            raise UsageError(f"choice {choice!r} is not one of {options}")
        position = self.order(participant).index(trial_id)
        row: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "participant": participant,
            "position": position,
            "trial": trial_id,
            "kind": self.kind,
            "image": trial.image,
            "method": trial.method,
            "layer": self.plan["layer"],
            "target_class": "|".join(str(c) for c in trial.classes),
            "options": "|".join(options),
            "choice": choice,
            "ms": "" if ms is None else round(ms),
            "seed": self.seed,
        }
        if self.kind == "trust":
            preferred = {"left": models[0], "right": models[1]}.get(choice, "same")
            row.update(
                target_label=trial.labels[0],
                left_model=models[0],
                right_model=models[1],
                preferred=preferred,
            )
        else:
            row.update(target_label=trial.answer, correct=int(choice == trial.answer))
        return self.log.append(row)


def check_participant(name: str) -> str:
    text = " ".join("".join(c for c in str(name) if c.isprintable()).split())[:64]
    if not text:
        raise UsageError("enter a participant name or code")
    return text


def prepare_study(options: StudyOptions, folder: Path, *, pool: ModelPool) -> Study:
    """Create the study in ``folder`` (or reopen it: the same settings continue where they were)
    with the models of ``pool``.

    Raises:
        UsageError: an unknown kind, a folder holding a study of other settings, no usable image.
    """
    if options.kind not in KINDS:
        raise UsageError(f"unknown study {options.kind!r}; choose from {', '.join(KINDS)}")
    models = list(dict.fromkeys(options.models))
    if options.kind == "trust" and len(models) != 2:
        raise UsageError("a trust study compares two different models: pass --model A --model B")
    if options.kind == "class-discrimination":
        models = models[:1]
    methods = list(parse_methods(options.methods))
    settings = {
        "kind": options.kind,
        "data": options.data,
        "methods": methods,
        "models": models,
        "layer": options.layer,
        "limit": options.limit,
    }
    folder = Path(folder)
    plan_path = folder / "study.json"
    explainer = Explainer(pool, input_entries=256, map_entries=256)
    images = study_images(options, pool.get(models[0]).spec)
    loaders = {i.id: functools.partial(i.decode, LoadOptions(options.max_pixels)) for i in images}
    if plan_path.exists():
        plan = json.loads(plan_path.read_text(encoding="utf-8"))
        differ = {k: (plan.get(k), v) for k, v in settings.items() if plan.get(k) != v}
        if differ:
            raise UsageError(
                f"{folder} holds a study with other settings (saved, given: {differ}); use another "
                "--out, or the same settings to continue it"
            )
        if options.seed is not None and options.seed != plan["seed"]:
            raise UsageError(
                f"{folder} was started with --seed {plan['seed']}; omit --seed or give that one"
            )
        trials = [
            Trial(**{**t, "classes": tuple(t["classes"]), "labels": tuple(t["labels"])})
            for t in plan["trials"]
        ]
        missing = sorted({t.image for t in trials} - set(loaders))
        if missing:
            raise UsageError(f"--data {options.data!r} no longer holds images {missing[:5]}")
        log.info("continuing the study in %s (%d trials)", folder, len(trials))
        return Study(folder, plan, trials, loaders, explainer)
    trials = build_trials(options.kind, images, methods, explainer, models, loaders, options.limit)
    if not trials:
        raise UsageError(
            f"--data {options.data!r} gives no trial for a {options.kind} study"
            + (
                " (it needs images with two objects of different classes)"
                if options.kind == "class-discrimination"
                else " (the two models agree on no image)"
            )
        )
    seed = options.seed if options.seed is not None else secrets.randbelow(2**31)
    plan = {**settings, "seed": seed, "trials": [asdict(t) for t in trials], "version": 1}
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(
            f"cannot create the study folder {str(folder)!r}: {err.strerror}"
        ) from None
    write_json(plan_path, plan, indent=1)
    return Study(folder, plan, trials, loaders, explainer)
