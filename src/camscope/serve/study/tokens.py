"""Study sessions: who may answer which trial.

A participant opens a session by typing a name (``POST /api/study/session``) and gets a random
token that only the study page reads (another site's page can send requests to the server but
cannot read its answers, so it never learns a token). Each trial served to the session is handed
out under a random ticket; an answer names its session and its ticket, and is accepted only for
a trial that this session was served. So a page elsewhere cannot answer in a participant's name,
nor answer trials the participant never saw (which used to lock the participant out of them),
and the tickets say nothing about the trial behind them (the trial ids in ``study.json`` follow
the data's order: with two methods, even ids were the first method).

Sessions live in memory: after a restart the page opens a new one with the same name and the
participant goes on at their first unanswered trial (:mod:`.session`). At most
:data:`MAX_SESSIONS` are kept; the least recently used goes first.
"""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

from ...errors import UsageError

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

    def __init__(self, limit: int = MAX_SESSIONS) -> None:
        self._sessions: OrderedDict[str, StudySession] = OrderedDict()
        self._lock = threading.Lock()
        self._limit = limit

    def open(self, participant: str) -> str:
        """A new session for ``participant``; returns its token."""
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._sessions[token] = StudySession(participant)
            while len(self._sessions) > self._limit:
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
