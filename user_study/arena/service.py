"""The arena's server side: battles, the images of a battle, votes with their integrity rules, the board.

Rules enforced here (the API and the Space tab only translate them):

- names are never handed out before the vote (a battle's images are served by random tokens);
- a vote is accepted only from the client the battle was shown to, once per battle (a unique constraint; a
  repeated identical vote, e.g. a double click, is answered as already counted and stored once), only after
  both images were on screen, and only ``min_look_s`` after that;
- refused votes are recorded with their reason (``arena_event``);
- the photo is never written anywhere unless the visitor ticked the consent box (then it is kept, mode 0600,
  with the time of consent);
- every counted vote is appended to the Hub JSONL backup when one is configured.

Rendered images live in a bounded in-memory store (the newest ``image_cache_battles`` battles), not on disk.

Why one file: a battle's life (drawn, rendered, shown, voted, counted on the board) is one story whose rules
refer to each other; split up, every check would need the others' state.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import random
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from bokeh_model.errors import InputError
from bokeh_model.files import atomic_write
from user_study.arena.config import CHOICES, ArenaConfig
from user_study.arena.leaderboard import arena_leaderboard, client_flags
from user_study.arena.pairing import draw_pair
from user_study.arena.render import RenderedPair, Renderer, png_bytes
from user_study.arena.storage import ArenaBattle, ArenaEvent, ArenaVote, make_arena_engine
from user_study.storage import hash_rater, new_id, utcnow

__all__ = ["ArenaRefused", "ArenaService", "Battle", "VoteResult", "get_arena_service", "photo_sha256"]

_PENDING_WINDOW = dt.timedelta(minutes=10)  # an unvoted battle counts towards its pair for this long


class ArenaRefused(InputError):
    """A request the arena refuses: HTTP-like ``status``, short ``code``, a message saying why."""

    def __init__(self, status: int, code: str, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.retry_after_s = status, code, retry_after_s


@dataclass
class Battle:
    """A battle as the page sees it: no method names until the vote."""

    id: str
    token_a: str
    token_b: str
    depth_source: str
    min_look_s: float
    images: tuple[Any, Any] | None = None  # the uint8 arrays (the Space shows them directly)


@dataclass
class VoteResult:
    """A counted vote (``status`` ``recorded``, or ``duplicate`` for a repeat of the same vote)."""

    battle_id: str
    choice: str
    method_a: str
    method_b: str
    seconds_shown: float
    status: str


class ArenaService:
    """Database-backed arena logic shared by the Space tab, the JSON API, the CLI and the tests.

    Args:
        db_url: SQLAlchemy URL of the study database.
        secret: Key of the client hash (the study's ``BOKEH_RATER_SECRET``).
        data_dir: Where consented photos are kept (``<data_dir>/arena/photos/``).
        config: Integrity and leaderboard settings.
        sink: Optional object with ``append(record)`` (the Hub JSONL backup).
    """

    def __init__(
        self,
        db_url: str,
        *,
        secret: str,
        data_dir: str | Path,
        config: ArenaConfig | None = None,
        sink: Any = None,
    ) -> None:
        self.db_url = db_url
        self.engine = make_arena_engine(db_url)
        self.Session = sessionmaker(self.engine, expire_on_commit=False)
        self.secret = secret
        self.data_dir = Path(data_dir)
        self.config = config or ArenaConfig.from_env()
        self.sink = sink
        sqlite = self.engine.dialect.name == "sqlite"
        # one writer at a time on SQLite: queue on a Python lock rather than in SQLite's sleeping busy handler
        self._tx_lock: Any = threading.Lock() if sqlite else contextlib.nullcontext()
        self._images: OrderedDict[str, tuple[str, str, bytes]] = OrderedDict()  # token -> (battle, side, png)
        self._fetched: dict[str, set[str]] = {}
        self._shown: dict[str, dt.datetime] = {}  # battle -> when both images were on screen
        self._img_lock = threading.Lock()
        self._board_cache: tuple[Any, Any] | None = None

    # -- clients and pairs ---------------------------------------------------------------------------------

    def client_hash(self, client_key: str) -> str:
        """Keyed hash of a client's address (the raw address is never stored)."""
        return hash_rater(self.secret, "arena", client_key or "unknown")

    @contextlib.contextmanager
    def _tx(self) -> Iterator[Session]:
        with self._tx_lock, self.Session() as s, s.begin():
            yield s

    def pair_counts(self) -> dict[tuple[str, str], float]:
        """Votes per sorted pair, plus battles of the last minutes still waiting for their vote."""
        since = utcnow() - _PENDING_WINDOW
        with self.Session() as s:
            voted = s.execute(
                select(ArenaVote.method_a, ArenaVote.method_b, func.count()).group_by(
                    ArenaVote.method_a, ArenaVote.method_b
                )
            ).all()
            pending = s.execute(
                select(ArenaBattle.method_a, ArenaBattle.method_b, func.count())
                .outerjoin(ArenaVote, ArenaVote.battle_id == ArenaBattle.id)
                .where(ArenaVote.id.is_(None), ArenaBattle.created_at >= since)
                .group_by(ArenaBattle.method_a, ArenaBattle.method_b)
            ).all()
        counts: dict[tuple[str, str], float] = {}
        for a, b, n in [*voted, *pending]:
            key = tuple(sorted((a, b)))
            counts[key] = counts.get(key, 0) + n
        return counts

    def draw(self, methods: list[str], rng: random.Random | None = None) -> tuple[str, str, bool]:
        """The next pair among ``methods`` (least-voted first; sides at random)."""
        return draw_pair(methods, self.pair_counts(), rng)

    # -- battles ---------------------------------------------------------------------------------------------

    def start_battle(
        self,
        renderer: Renderer,
        photo: Any,
        focus: tuple[float, float],
        *,
        client_hash: str,
        channel: str,
        photo_sha256: str,
        photo_size: tuple[int, int],
        consent_photo: bytes | None = None,
        photo_ext: str = ".png",
        rng: random.Random | None = None,
    ) -> Battle:
        """Draw a pair, render both on ``photo`` (float RGB, processing size) with one depth map, store it.

        Args:
            focus: The clicked subject in [0, 1] of the width and height.
            photo_size: The upload's own ``(width, height)``.
            consent_photo: The uploaded file, only when the visitor ticked the consent box.
        """
        fx, fy = float(focus[0]), float(focus[1])
        if not (0.0 <= fx <= 1.0 and 0.0 <= fy <= 1.0):
            raise ArenaRefused(422, "bad_focus", f"focus x, y must lie in [0, 1], got ({fx}, {fy})")
        a, b, swapped = self.draw(renderer.methods(), rng)
        height, width = photo.shape[:2]
        xy = (min(width - 1, int(fx * width)), min(height - 1, int(fy * height)))
        pair: RenderedPair = renderer.render(photo, xy, (a, b))
        return self.open_battle(
            client_hash=client_hash,
            channel=channel,
            methods=(a, b),
            swapped=swapped,
            focus=(fx, fy),
            params=pair.params,
            depth_source=pair.depth_source,
            photo_sha256=photo_sha256,
            photo_size=photo_size,
            images=pair.images,
            consent_photo=consent_photo,
            photo_ext=photo_ext,
        )

    def open_battle(
        self,
        *,
        client_hash: str,
        channel: str,
        methods: tuple[str, str],
        swapped: bool,
        focus: tuple[float, float],
        params: dict[str, Any],
        depth_source: str,
        photo_sha256: str,
        photo_size: tuple[int, int],
        images: tuple[Any, Any],
        consent_photo: bytes | None = None,
        photo_ext: str = ".png",
    ) -> Battle:
        """Store a rendered battle (``images`` in the order of ``methods``: A then B) and its image tokens."""
        battle_id = new_id()
        photo_path = ""
        if consent_photo is not None:
            folder = self.data_dir / "arena" / "photos"
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            ext = photo_ext.lower() if photo_ext.lower() in (".png", ".jpg", ".jpeg", ".webp") else ".img"
            path = folder / f"{photo_sha256}{ext}"
            atomic_write(path, consent_photo)
            os.chmod(path, 0o600)
            photo_path = str(path)
        now = utcnow()
        with self._tx() as s:
            s.add(
                ArenaBattle(
                    id=battle_id,
                    client_hash=client_hash,
                    channel=channel,
                    method_a=methods[0],
                    method_b=methods[1],
                    swapped=swapped,
                    focus_x=focus[0],
                    focus_y=focus[1],
                    params=params,
                    depth_source=depth_source,
                    photo_sha256=photo_sha256,
                    photo_width=int(photo_size[0]),
                    photo_height=int(photo_size[1]),
                    photo_path=photo_path,
                    consent=consent_photo is not None,
                    consent_at=now if consent_photo is not None else None,
                    created_at=now,
                )
            )
        tokens = ("", "")
        if channel == "api":  # served by token; the Space hands the images to its page directly
            tokens = (new_id(), new_id())
            pngs = [png_bytes(image) for image in images]
            with self._img_lock:
                for token, side, data in zip(tokens, ("a", "b"), pngs, strict=True):
                    self._images[token] = (battle_id, side, data)
                self._fetched[battle_id] = set()
                while len(self._images) > 2 * self.config.image_cache_battles:
                    _, (old, _, _) = self._images.popitem(last=False)
                    self._fetched.pop(old, None)
                    self._shown.pop(old, None)
        return Battle(battle_id, tokens[0], tokens[1], depth_source, self.config.min_look_s, images)

    def image(self, token: str) -> bytes | None:
        """The PNG of one side of a battle; when both sides have been fetched, the battle counts as shown."""
        with self._img_lock:
            hit = self._images.get(token)
            if hit is None:
                return None
            battle_id, side, data = hit
            seen = self._fetched.setdefault(battle_id, set())
            first_time_both = side not in seen and len(seen | {side}) == 2
            seen.add(side)
        if first_time_both:
            self.mark_shown(battle_id)
        return data

    def mark_shown(self, battle_id: str) -> None:
        """Record when both images were on screen (the first time only).

        Kept in memory beside the images (a battle can only be shown by the process that holds its images) and
        written to the battle's row with its vote, so showing an image costs no database write.
        """
        with self._img_lock:
            self._shown.setdefault(battle_id, utcnow())
            while len(self._shown) > 20 * self.config.image_cache_battles:  # bounded: the oldest go first
                self._shown.pop(next(iter(self._shown)))

    # -- votes -----------------------------------------------------------------------------------------------

    def _refuse(self, s: Session, status: int, code: str, message: str, client: str, battle_id: str, **kw: Any):
        s.add(ArenaEvent(kind="vote_refused", client_hash=client, battle_id=battle_id[:64], detail={"code": code}))
        return ArenaRefused(status, code, message, **kw)

    def vote(self, battle_id: str, client_hash: str, choice: str, *, now: dt.datetime | None = None) -> VoteResult:
        """Count one vote, or raise :class:`ArenaRefused` saying why not (see the module docstring)."""
        out = self.vote_many([(battle_id, client_hash, choice)], now=now)[0]
        if isinstance(out, ArenaRefused):
            raise out
        return out

    def vote_many(
        self, votes: list[tuple[str, str, str]], *, now: dt.datetime | None = None
    ) -> list[VoteResult | ArenaRefused]:
        """Judge several ``(battle_id, client_hash, choice)`` votes in ONE transaction (one disk sync for all:
        the API groups the votes that arrive while the previous group is being written). Each gets its own
        answer, in order: a :class:`VoteResult`, or the :class:`ArenaRefused` saying why not."""
        answers: list[VoteResult | ArenaRefused] = []
        records: list[dict[str, Any]] = []
        with self._tx() as s:
            for battle_id, client_hash, choice in votes:
                answer, record = self._judge(s, str(battle_id or ""), client_hash, choice, now or utcnow())
                answers.append(answer)
                if record is not None:
                    records.append(record)
        if self.sink is not None:
            for record in records:
                self.sink.append(record)
        return answers

    def _judge(
        self, s: Session, battle_id: str, client_hash: str, choice: str, now: dt.datetime
    ) -> tuple[VoteResult | ArenaRefused, dict[str, Any] | None]:
        choice = str(choice or "").strip().lower()
        if choice not in CHOICES:
            return ArenaRefused(422, "bad_choice", f"choice must be one of {list(CHOICES)}, got {choice!r}"), None
        battle = s.get(ArenaBattle, battle_id) if battle_id else None
        if battle is None or battle.client_hash != client_hash:
            message = "no such battle was shown to you; vote on the pair on your screen"
            return self._refuse(s, 404, "unknown_battle", message, client_hash, battle_id), None
        existing = s.scalars(select(ArenaVote).where(ArenaVote.battle_id == battle_id)).first()
        if existing is not None:
            if existing.choice == choice:  # a double click: counted once, answered the same
                return _result(existing, "duplicate"), None
            message = "this pair already has your vote; press Next for a new pair"
            return self._refuse(s, 409, "already_voted", message, client_hash, battle_id), None
        shown_at = battle.shown_at or self._shown.get(battle_id)
        if shown_at is None:
            message = "wait until both images are on screen, then vote"
            return self._refuse(s, 409, "not_shown", message, client_hash, battle_id), None
        seconds = (now - shown_at).total_seconds()
        if seconds < self.config.min_look_s:
            wait = self.config.min_look_s - seconds
            message = f"look at both images a little longer ({wait:.1f} s more) before voting"
            return self._refuse(s, 409, "too_fast", message, client_hash, battle_id, retry_after_s=wait), None
        vote = ArenaVote(
            id=new_id(),
            battle_id=battle_id,
            client_hash=client_hash,
            method_a=battle.method_a,
            method_b=battle.method_b,
            choice=choice,
            seconds_shown=round(seconds, 3),
            created_at=now,
        )
        try:
            with s.begin_nested():  # a racing vote of another process on the same battle fails alone
                s.add(vote)
                battle.shown_at = shown_at
        except IntegrityError:
            return ArenaRefused(409, "already_voted", "this pair already has a vote"), None
        record = _record(battle, vote)
        return VoteResult(battle_id, choice, vote.method_a, vote.method_b, vote.seconds_shown, "recorded"), record

    # -- tables for organizers and the board ------------------------------------------------------------------

    def votes_frame(self, *, include_excluded: bool = False) -> pd.DataFrame:
        """Every counted vote joined with its battle (what the export and the board read)."""
        cols = [
            "vote_id", "battle_id", "created_at", "client_hash", "method_a", "method_b", "choice",
            "seconds_shown", "swapped", "focus_x", "focus_y", "params", "depth_source", "photo_sha256",
            "photo_width", "photo_height", "consent", "channel", "excluded", "exclusion_reason",
        ]  # fmt: skip
        with self.Session() as s:
            q = select(ArenaVote, ArenaBattle).join(ArenaBattle, ArenaBattle.id == ArenaVote.battle_id)
            if not include_excluded:
                q = q.where(ArenaVote.excluded.is_(False))
            rows = [
                _record(b, v) | {"excluded": v.excluded, "exclusion_reason": v.exclusion_reason}
                for v, b in s.execute(q.order_by(ArenaVote.created_at, ArenaVote.id))
            ]
        return pd.DataFrame(rows, columns=cols)

    def fingerprint(self) -> tuple[int, int]:
        """Changes whenever a vote is added or excluded (votes are never deleted), so the board is recomputed
        then and never served stale."""
        with self.Session() as s:
            n = s.scalar(select(func.count()).select_from(ArenaVote))
            excluded = s.scalar(select(func.count()).select_from(ArenaVote).where(ArenaVote.excluded.is_(True)))
        return int(n or 0), int(excluded or 0)

    def leaderboard(
        self, methods: list[str] | None = None, *, include_flagged: bool = False
    ) -> tuple[pd.DataFrame, dict[str, Any]]:
        """``(rows, info)``: the board from the stored votes now, and what went into it.

        Clients flagged for always picking the same side are left out unless ``include_flagged``.
        """
        key = (self.fingerprint(), tuple(methods or ()), include_flagged)
        cached = self._board_cache
        if cached is not None and cached[0] == key:
            return cached[1]
        votes = self.votes_frame()
        flags = client_flags(votes, min_votes=self.config.same_side_min_votes, share=self.config.same_side_share)
        flagged = set(flags.loc[flags["flagged"], "client_hash"]) if len(flags) else set()
        used = votes if include_flagged else votes[~votes["client_hash"].isin(flagged)]
        board = arena_leaderboard(
            used, methods=methods, rounds=self.config.bootstrap_rounds, min_votes=self.config.min_votes_for_rank
        )
        info = {
            "votes": int(len(used)),
            "votes_stored": int(len(votes)),
            "flagged_clients": len(flagged),
            "flagged_votes_left_out": 0 if include_flagged else int(len(votes) - len(used)),
            "min_votes_for_rank": self.config.min_votes_for_rank,
            "bootstrap_rounds": self.config.bootstrap_rounds,
            "used_votes": used,
        }
        self._board_cache = (key, (board, info))
        return board, info

    def exclude_client(self, client_hash: str, reason: str) -> int:
        """Exclude every vote of a client (kept, marked, with the reason); returns how many."""
        if not reason.strip():
            raise ValueError("give a reason for the exclusion")
        with self._tx() as s:
            n = s.execute(
                update(ArenaVote)
                .where(ArenaVote.client_hash == client_hash, ArenaVote.excluded.is_(False))
                .values(excluded=True, exclusion_reason=reason)
            ).rowcount
            s.add(ArenaEvent(kind="exclude", client_hash=client_hash, detail={"reason": reason, "votes": n}))
        return int(n or 0)

    def refusals(self) -> pd.DataFrame:
        """Refused votes per client and reason."""
        with self.Session() as s:
            rows = s.execute(
                select(ArenaEvent.client_hash, ArenaEvent.detail, func.count())
                .where(ArenaEvent.kind == "vote_refused")
                .group_by(ArenaEvent.client_hash, ArenaEvent.detail)
            ).all()
        return pd.DataFrame(
            [(c, (d or {}).get("code", ""), n) for c, d, n in rows], columns=["client_hash", "code", "refused"]
        )

    def restore_records(self, records: list[dict[str, Any]]) -> dict[str, int]:
        """Put votes back from the Hub JSONL backup (or ``arena export``'s JSON lines) into this database.

        Each record recreates its battle (when missing) and its vote, with the ids, times and exclusions it
        carries; votes already present (same vote id, or a battle that has its vote) are skipped, so a restore
        can be repeated. Restored votes are not appended to the backup again. Every record is checked before
        anything is written: a bad one raises ``InputError`` naming its position and field, and nothing is kept.

        Returns:
            ``{"restored": n, "skipped": n}``.
        """
        parsed = [_vote_from_record(record, n) for n, record in enumerate(records, 1)]
        restored = skipped = 0
        with self._tx() as s:
            for battle, vote in parsed:
                present = s.get(ArenaVote, vote.id) is not None or (
                    s.scalars(select(ArenaVote.id).where(ArenaVote.battle_id == battle.id)).first() is not None
                )
                if present:
                    skipped += 1
                    continue
                if s.get(ArenaBattle, battle.id) is None:
                    s.add(battle)
                    s.flush()  # the vote's foreign key needs its battle first
                s.add(vote)
                restored += 1
            s.add(ArenaEvent(kind="restore", detail={"restored": restored, "skipped": skipped}))
        self._board_cache = None
        return {"restored": restored, "skipped": skipped}

    def close(self) -> None:
        """Dispose of the connection pool."""
        self.engine.dispose()


def _result(vote: ArenaVote, status: str) -> VoteResult:
    return VoteResult(vote.battle_id, vote.choice, vote.method_a, vote.method_b, vote.seconds_shown, status)


def _record(battle: ArenaBattle, vote: ArenaVote) -> dict[str, Any]:
    """One vote as a flat record (the export's row and the Hub JSONL line)."""
    return {
        "kind": "arena_vote",
        "vote_id": vote.id,
        "battle_id": battle.id,
        "created_at": vote.created_at.isoformat() if vote.created_at else None,
        "client_hash": vote.client_hash,
        "method_a": vote.method_a,
        "method_b": vote.method_b,
        "choice": vote.choice,
        "seconds_shown": vote.seconds_shown,
        "swapped": battle.swapped,
        "focus_x": battle.focus_x,
        "focus_y": battle.focus_y,
        "params": battle.params,
        "depth_source": battle.depth_source,
        "photo_sha256": battle.photo_sha256,
        "photo_width": battle.photo_width,
        "photo_height": battle.photo_height,
        "consent": battle.consent,
        "channel": battle.channel,
    }


# the text fields of a backup record and their column widths (PostgreSQL refuses longer values)
_RECORD_TEXT = {"vote_id": 32, "battle_id": 32, "client_hash": 32, "method_a": 64, "method_b": 64, "choice": 8,
                "photo_sha256": 64}  # fmt: skip


def _vote_from_record(record: Any, position: int) -> tuple[ArenaBattle, ArenaVote]:
    """A battle and its vote from one backup record (the inverse of :func:`_record`), checked field by field."""

    def bad(what: str) -> InputError:
        return InputError(f"record {position}: {what}")

    if not isinstance(record, dict) or record.get("kind", "arena_vote") != "arena_vote":
        raise bad("not an arena vote (expected an object with kind 'arena_vote')")
    for key, width in _RECORD_TEXT.items():
        if not isinstance(record.get(key), str) or not record[key] or len(record[key]) > width:
            raise bad(f"{key!r} is missing, not text or longer than {width} characters")
    if record["choice"] not in CHOICES:
        raise bad(f"choice must be one of {list(CHOICES)}, got {record['choice']!r}")
    try:
        created = dt.datetime.fromisoformat(str(record["created_at"]))
        seconds = float(record.get("seconds_shown") or 0.0)
        focus = float(record.get("focus_x", 0.5)), float(record.get("focus_y", 0.5))
        size = int(record.get("photo_width") or 0), int(record.get("photo_height") or 0)
    except (KeyError, TypeError, ValueError) as exc:
        raise bad(f"a time or number field cannot be read ({exc})") from None
    if created.tzinfo is not None:  # stored naive UTC, as utcnow() writes it
        created = created.astimezone(dt.timezone.utc).replace(tzinfo=None)
    params = record.get("params") or {}
    if not isinstance(params, dict):
        raise bad("'params' must be an object")
    flags = {}
    for key in ("swapped", "consent", "excluded"):
        value = record.get(key, False)
        # the export writes flags as JSON booleans; a line that went through a text tool may say "True"/"false"
        text = str(value).strip().lower()
        if text not in ("true", "false", "1", "0", "none", ""):
            raise bad(f"{key!r} must be true or false, got {value!r}")
        flags[key] = text in ("true", "1")
    battle = ArenaBattle(
        id=record["battle_id"],
        client_hash=record["client_hash"],
        channel=str(record.get("channel") or "space"),
        method_a=record["method_a"],
        method_b=record["method_b"],
        swapped=flags["swapped"],
        focus_x=focus[0],
        focus_y=focus[1],
        params=params,
        depth_source=str(record.get("depth_source") or ""),
        photo_sha256=record["photo_sha256"],
        photo_width=size[0],
        photo_height=size[1],
        consent=flags["consent"],  # the photo itself is not in the backup
        created_at=created - dt.timedelta(seconds=seconds),
        shown_at=created - dt.timedelta(seconds=seconds),
    )
    vote = ArenaVote(
        id=record["vote_id"],
        battle_id=record["battle_id"],
        client_hash=record["client_hash"],
        method_a=record["method_a"],
        method_b=record["method_b"],
        choice=record["choice"],
        seconds_shown=seconds,
        created_at=created,
        excluded=flags["excluded"],
        exclusion_reason=str(record.get("exclusion_reason") or ""),
    )
    return battle, vote


def photo_sha256(data: bytes) -> str:
    """SHA-256 of the uploaded file's bytes (recorded instead of the photo)."""
    return hashlib.sha256(data).hexdigest()


_SERVICES: dict[str, ArenaService] = {}
_SERVICES_LOCK = threading.Lock()


def get_arena_service(db_url: str | None = None) -> ArenaService:
    """The shared :class:`ArenaService` of this process for ``db_url`` (settings from the environment)."""
    from user_study.arena.hub import arena_sink_from_env
    from user_study.config import Settings

    settings = Settings.from_env(db_url)
    with _SERVICES_LOCK:
        svc = _SERVICES.get(settings.db_url)
        if svc is None:
            svc = _SERVICES[settings.db_url] = ArenaService(
                settings.db_url,
                secret=settings.rater_secret,
                data_dir=settings.data_dir,
                sink=arena_sink_from_env(settings.data_dir, settings.hub_repo, settings.hf_token),
            )
    return svc
