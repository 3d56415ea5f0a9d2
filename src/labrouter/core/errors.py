"""The one error hierarchy of labrouter.

Owns every exception type that crosses a layer. Library errors (httpx, cryptography,
OS errors) are translated into these where they enter, with ``raise ... from exc``, so
the rest of the code, and the fallover logic in particular, decides by type alone.

Must not import anything but the standard library.

::

    LabrouterError                  every error a user may see; .hint says what to do
    ├── ConfigError                 a bad config file, key or value (exit code 2)
    ├── UsageError                  bad command-line usage (exit code 2)
    ├── KeyringError                no cluster key, a bad join code, a bad key file
    ├── StorageError                a folder or file labrouter cannot use: a file where a
    │                               folder belongs (exit 2), no permission, a full disk
    ├── DaemonError                 the running daemon cannot be reached or refused
    │   └── AlreadyRunning          a second daemon for the same user
    ├── NoCandidate                 no live server has a model for this request
    ├── AllFailed                   every candidate was tried and none answered
    └── BackendError                one inference server failed one request
        ├── Unreachable             connection refused, DNS, TLS: the server is down
        ├── BackendTimeout          connect, first token, gap or total timeout
        │   └── DeadlineMissed      slower than this model has ever been (learned deadline)
        ├── ModelNotFound           the server does not have the model (HTTP 404)
        ├── Refused                 the server is up but will not serve now (429, 503, paused)
        ├── ServerFailure           HTTP 5xx or an error body from the server
        └── ProtocolError           a malformed response: bad JSON, bad stream framing
"""

from __future__ import annotations


class LabrouterError(Exception):
    """Base of every error labrouter shows to a user.

    ``hint`` tells the user what to do about it; the CLI prints it under the message.
    """

    exit_code: int = 1

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class ConfigError(LabrouterError):
    """A config file that cannot be read, parsed or validated."""

    exit_code = 2


class UsageError(LabrouterError):
    """Bad command-line usage."""

    exit_code = 2


class KeyringError(LabrouterError):
    """A missing or bad cluster key, key file or join code."""

    exit_code = 2


class StorageError(LabrouterError):
    """A folder or file that cannot be used: not a folder, not writable, disk full."""

    def __init__(self, message: str, hint: str = "", exit_code: int = 1) -> None:
        super().__init__(message, hint)
        self.exit_code = exit_code


class DaemonError(LabrouterError):
    """The running daemon could not be reached or refused a command."""


class AlreadyRunning(DaemonError):
    """Another labrouter daemon already runs for this user and home."""


class NoCandidate(LabrouterError):
    """No live, unpaused server has any model this request could use."""


class AllFailed(LabrouterError):
    """Every candidate was tried and none produced an answer."""

    def __init__(self, message: str, attempts: list[tuple[str, str]], hint: str = "") -> None:
        super().__init__(message, hint)
        #: (candidate label, reason) for every attempt, in order
        self.attempts = attempts


class BackendError(LabrouterError):
    """One inference server failed one request; another candidate may still answer.

    ``server_down`` says the server itself looks down (passive health marks it suspect).
    """

    server_down: bool = False


class Unreachable(BackendError):
    """The server could not be reached at all."""

    server_down = True


class BackendTimeout(BackendError):
    """A connect, first-token, between-token or total timeout."""

    server_down = True


class DeadlineMissed(BackendTimeout):
    """No token (or a silence mid-answer) past the deadline learned from this model's own
    answers: this model is hung or stalled; its server's other models may well be fine."""

    server_down = False


class ModelNotFound(BackendError):
    """The server answered that it does not have the model."""


class Refused(BackendError):
    """The server is up but refuses work now (busy, paused, rate-limited)."""


class ServerFailure(BackendError):
    """The server reported an error (HTTP 5xx or an error body)."""


class ProtocolError(BackendError):
    """The server's answer did not follow its protocol."""
