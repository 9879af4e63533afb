"""A session's identity: what produced the state in a data folder, and how two identities differ.

A data folder belongs to one session. Its store records the identity of the session that made
it; a session started on a folder whose recorded identity differs is refused before any actor
starts (``SessionMismatch``), naming every difference as ``field: stored X, now Y``. Pure code:
``run.py`` fingerprints the replay files and the store persists the identity as JSON.

What the identity holds, and why:

- Every session: ``source`` (sim, replay, manual, binance, bybit), ``mode`` (paper or live),
  ``venue`` (the venue that holds the account: ``paper``, or for a live session the exchange
  and whether it is its testnet, ``binanceusdm testnet`` / ``binanceusdm live``) and, for a
  live feed, its ``market`` (e.g. ``binance usdm``). A paper folder is therefore refused in
  live mode and a live one in paper mode, and a testnet folder on the real account: positions
  of one account are never taken for another's (``SessionMismatch`` says so). A sim, manual or live paper session is an account that goes on: it keeps
  its state across restarts whatever else changes (symbols, strategies, limits, seed).
- A replay also: each file (coin, size and the sha256 of its bytes; the path is shown but a
  file moved elsewhere with the same content is the same replay) and every setting that changes
  what the replay produces (``REPLAY_SETTINGS``): ``[feed] symbols, bar_seconds``, ``[engine]
  clock``, all of ``[paper]``, ``[sniper]`` and ``[risk]``, ``[session] on_stop``,
  ``[strategist] strategies`` and each strategy's table, and the ``[markets]`` rules of the
  replayed coins. Not: ``speed`` (a replay gives the same journal at any speed, so a paced run
  may be finished at max speed), the data folder, logging, supervisor and timer settings, the
  journal URL, ``settle_timeout_s``.

Values are compared as canonical text: numbers by value (``0.1`` = ``0.10`` = ``"0.1"``), a
setting left out is ``(not set)`` (so writing a strategy's default explicitly counts as a change).
A key of ``[paper]``, ``[sniper]`` or ``[risk]`` that a folder's identity lacks because a later
version added it is no difference while it has its default (``SessionIdentity.defaults``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, is_dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from state.config import Config

IDENTITY_VERSION = 1
NOT_SET = "(not set)"
KIND_FIELDS = ("source", "mode", "venue", "market")
LIVE_SOURCES = ("binance", "bybit")


class DataDirError(Exception):
    """The data folder cannot be used for this session (the command line exits 2)."""


class DataDirUnusable(DataDirError):
    """The folder cannot be created, written or read (a file in the way, read-only, missing)."""


class NoSession(DataDirError):
    """``--status`` on a folder where no session has ever run."""


class SessionMismatch(DataDirError):
    """The folder holds the state of another session; ``differences`` says how it differs."""

    def __init__(self, data_dir: Path | str, stored: SessionIdentity, now: SessionIdentity,
                 differences: list[str]) -> None:
        self.data_dir = Path(data_dir)
        self.stored = stored
        self.now = now
        self.differences = differences
        listing = "\n".join(f"  {line}" for line in differences)
        why = _accounts_differ(stored, now)
        super().__init__(
            f"data_dir {self.data_dir} holds the state of another session "
            f"({describe(stored)}); this one is {describe(now)}. What differs (stored, now):\n{listing}\n"
            + (f"{why}\n" if why else "") +
            f"Nothing was started. Either use another folder (--data-dir DIR; build_engine(data_dir=...)), "
            f"or start this one empty with --fresh (build_engine(fresh=True)), which moves its contents "
            f"to {self.data_dir / 'archive'}/<UTC timestamp>/ (nothing is deleted)."
        )


def _accounts_differ(stored: SessionIdentity, now: SessionIdentity) -> str:
    """Why a folder of another account is never used: a paper account's positions are not an
    exchange's, a testnet's are not the real account's."""
    if stored.mode != now.mode and "live" in (stored.mode, now.mode):
        return ("Never mix paper positions with a real account: this folder's positions and balance "
                f"belong to a {stored.mode} session, and a {now.mode} session would take them for its own.")
    if stored.mode == now.mode == "live" and stored.venue != now.venue:
        return (f"Never mix two accounts: this folder's positions are those of {stored.venue}, not of "
                f"{now.venue}.")
    return ""


class ReplayAlreadyComplete(Exception):  # noqa: N818 - a state, not a failure: the CLI exits 0
    """The replay of this folder reached its end before: there is nothing left to replay."""

    def __init__(self, data_dir: Path | str, completion: Mapping[str, Any]) -> None:
        self.data_dir = Path(data_dir)
        self.completion = dict(completion)
        super().__init__(
            f"the replay in {self.data_dir} is already complete (run {completion.get('run_id')} "
            f"reached the end of data at {completion.get('ended_at')}); its report is "
            f"{self.report_path}. To replay it again: --fresh, or another --data-dir."
        )

    @property
    def report_path(self) -> Path:
        return self.data_dir / "runs" / str(self.completion.get("run_id")) / "summary.json"


@dataclass(frozen=True, slots=True, kw_only=True)
class FileFingerprint:
    """One replay file: its coin, where it was, how long it is and what is in it."""

    coin: str
    path: str
    size: int
    sha256: str

    def same_content(self, other: FileFingerprint) -> bool:
        return (self.coin, self.size, self.sha256) == (other.coin, other.size, other.sha256)

    def describe(self) -> str:
        return f"{self.path} ({self.size} bytes, sha256 {self.sha256[:12]})"


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionIdentity:
    source: str
    mode: str
    venue: str
    market: str = ""
    files: tuple[FileFingerprint, ...] = ()
    settings: Mapping[str, str] = field(default_factory=dict)  # replay: "section.key" -> canonical text
    # The defaults of the sections recorded whole ([paper], [sniper], [risk]), as canonical text:
    # a key a folder's stored identity lacks (a setting added by a later version) is no
    # difference while it has its default, since a new setting's default keeps what the version
    # before did. Not stored: a property of this version, not of the session.
    defaults: Mapping[str, str] = field(default_factory=dict, compare=False)


def identity_from_config(config: Config, files: Sequence[FileFingerprint] = ()) -> SessionIdentity:
    """The identity of a session of ``config``; ``files`` are the fingerprints of its replay
    files, in the order of ``[feed] files`` (ignored unless the source is a replay)."""
    feed = config.feed
    market = f"{feed.source} {feed.market_kind()}" if feed.source in LIVE_SOURCES else ""
    kind = {"source": feed.source, "mode": config.engine.mode, "venue": venue_name(config), "market": market}
    if feed.source != "replay":
        return SessionIdentity(**kind)
    return SessionIdentity(**kind, files=tuple(files), settings=replay_settings(config),
                           defaults=section_defaults(config))


def venue_name(config: Config) -> str:
    """``paper``, or a live session's exchange and account kind: ``binanceusdm testnet`` or
    ``binanceusdm live`` (real money)."""
    if not config.live:
        return "paper"
    return f"{config.venue.exchange_for(config.feed)} {'testnet' if config.venue.testnet else 'live'}"


def section_defaults(config: Config) -> dict[str, str]:
    """The default value of every key of the sections ``replay_settings`` records whole."""
    out: dict[str, str] = {}
    for section in ("paper", "sniper", "risk"):
        out.update(_flatten(section, type(getattr(config, section))()))
    return out


def replay_settings(config: Config) -> dict[str, str]:
    """Every setting that changes what a replay produces, as ``section.key`` -> canonical text."""
    feed = config.feed
    out: dict[str, str] = {
        "engine.clock": canonical(config.engine.clock),
        "feed.symbols": canonical(list(feed.symbols)),
        "feed.bar_seconds": canonical(feed.bar_seconds),
        "session.on_stop": canonical(config.session.on_stop),
        "strategist.strategies": canonical(list(config.strategist.strategies)),
    }
    for section in ("paper", "sniper", "risk"):
        out.update(_flatten(section, getattr(config, section)))
    settings = config.strategist.settings
    for name in config.strategist.strategies:
        for key, value in (settings.get(name) or {}).items():
            out[f"strategist.{name}.{key}"] = canonical(value)
    coins = sorted(set(feed.symbols) | {f.coin for f in feed.files})
    for coin in coins:
        rules = config.market(coin)
        out.update({key: value for key, value in _flatten(f"markets.{coin}", rules).items()
                    if not key.endswith(".coin")})
    return dict(sorted(out.items()))


def _flatten(prefix: str, obj: Any) -> dict[str, str]:
    return {f"{prefix}.{item.name}": canonical(getattr(obj, item.name)) for item in fields(obj)}


def canonical(value: Any) -> str:
    """A value as text that is equal exactly when the values are: numbers by value, lists in
    order, tables by sorted key."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, Decimal)):
        number = value if isinstance(value, Decimal) else Decimal(str(value))
        if not number.is_finite():
            return str(number)
        text = format(number.normalize(), "f")
        return "0" if text in ("-0", "0") else text
    if isinstance(value, str):
        return value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k} = {canonical(v)}" for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(canonical(v) for v in value) + "]"
    if is_dataclass(value) and not isinstance(value, type):
        return canonical({item.name: getattr(value, item.name) for item in fields(value)})
    return repr(value)


def differences(stored: SessionIdentity, now: SessionIdentity) -> list[str]:
    """What differs, one line per field, as ``field: stored X, now Y``; empty when the same
    session. A different kind of session (source, mode, venue, market) is reported alone: the
    details of another kind of session say nothing more."""
    kind = [f"{name}: stored {getattr(stored, name) or NOT_SET}, now {getattr(now, name) or NOT_SET}"
            for name in KIND_FIELDS if getattr(stored, name) != getattr(now, name)]
    if kind:
        return kind
    lines = _file_differences(stored.files, now.files)
    for key in sorted(set(stored.settings) | set(now.settings)):
        before, after = stored.settings.get(key, NOT_SET), now.settings.get(key, NOT_SET)
        if before == NOT_SET and key in now.defaults and after == now.defaults[key]:
            continue  # added by a later version, at the default that keeps the earlier behavior
        if before != after:
            lines.append(f"{key}: stored {before}, now {after}")
    return lines


def _file_differences(stored: tuple[FileFingerprint, ...], now: tuple[FileFingerprint, ...]) -> list[str]:
    lines = []
    if len(stored) != len(now):
        lines.append(f"feed.files: stored {len(stored)} file(s), now {len(now)}")
    for index in range(max(len(stored), len(now))):
        before = stored[index] if index < len(stored) else None
        after = now[index] if index < len(now) else None
        where = f"feed.files[{index + 1}]"
        if before is None or after is None:
            file = after or before
            assert file is not None
            lines.append(f"{where} {file.coin}: stored {before.describe() if before else NOT_SET}, "
                         f"now {after.describe() if after else NOT_SET}")
        elif not before.same_content(after):
            if before.coin != after.coin:
                lines.append(f"{where}: stored coin {before.coin}, now {after.coin}")
            if before.path == after.path:
                lines.append(f"{where} {after.coin}: same path {after.path}, different content: stored "
                             f"{before.size} bytes sha256 {before.sha256[:12]}, now {after.size} bytes "
                             f"sha256 {after.sha256[:12]}")
            else:
                lines.append(f"{where} {after.coin}: stored {before.describe()}, now {after.describe()}")
    return lines


def describe(identity: SessionIdentity) -> str:
    """A few words: ``a replay paper session of BTC (slice.csv)``."""
    text = f"a {identity.source} {identity.mode} session"
    if identity.mode == "live":
        text += f" trading {identity.venue}"
    if identity.market:
        text += f" on {identity.market}"
    if identity.files:
        text += " of " + ", ".join(f"{f.coin} ({Path(f.path).name})" for f in identity.files)
    return text


# --- JSON (what the store keeps) --------------------------------------------------------------------

def to_json(identity: SessionIdentity) -> str:
    data = {
        "version": IDENTITY_VERSION,
        **{name: getattr(identity, name) for name in KIND_FIELDS},
        "files": [{item.name: getattr(f, item.name) for item in fields(f)} for f in identity.files],
        "settings": dict(identity.settings),
    }
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def from_json(text: str) -> SessionIdentity:
    """The identity ``to_json`` wrote; ``ValueError`` naming what is wrong otherwise."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"session identity: not JSON: {error}") from None
    if not isinstance(data, dict):
        raise ValueError(f"session identity: expected an object, got {type(data).__name__}")
    if data.get("version") != IDENTITY_VERSION:
        raise ValueError(f"session identity: version {data.get('version')!r} is not {IDENTITY_VERSION} "
                         "(written by another version of the engine)")
    try:
        files = tuple(FileFingerprint(coin=str(f["coin"]), path=str(f["path"]), size=int(f["size"]),
                                      sha256=str(f["sha256"])) for f in data.get("files", []))
        settings = {str(k): str(v) for k, v in dict(data.get("settings", {})).items()}
        return SessionIdentity(**{name: str(data[name]) for name in KIND_FIELDS}, files=files,
                               settings=settings)
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"session identity: malformed: {error!r}") from None


def as_dict(identity: SessionIdentity) -> dict[str, Any]:
    """JSON-ready (``--status``)."""
    data: dict[str, Any] = json.loads(to_json(identity))
    data.pop("version", None)
    return data
