"""Study service: create studies, hand out sessions, validate and store ratings, read tables back.

Every method opens its own short transaction, so one :class:`StudyService` can be shared by all request
threads of the app (rater state lives in the caller, e.g. ``gr.State``). All validation of a submit happens
here, on the server, against the rater's stored assignment.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import random
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from PIL import Image, ImageDraw, ImageFont
from sqlalchemy import and_, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from user_study.assignment import Candidate, plan_session
from user_study.config import PAIRWISE_CHOICES, Settings, StudyConfig
from user_study.storage import (
    Assignment,
    Event,
    Item,
    Method,
    Rater,
    Rating,
    Scene,
    Slot,
    Study,
    hash_rater,
    make_engine,
    make_sessionmaker,
    new_id,
    utcnow,
)

__all__ = [
    "APP_VERSION",
    "IMAGE_EXTS",
    "RaterView",
    "StudyError",
    "StudyService",
    "SubmitRejected",
    "SubmitResult",
    "discover_run",
]

APP_VERSION = "1"
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp")


class StudyError(ValueError):
    """A request the study cannot serve (unknown study, blocked rater, bad input); the message says why."""


class SubmitRejected(StudyError):
    """A submit that does not match the rater's assignment. ``code`` is a short machine-readable reason."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class RaterView:
    """What the rater should see now (also the per-rater state kept by the UI).

    Attributes:
        study_id: Study id.
        rater_id: Keyed hash of the rater's external id.
        assignment_id: Current session id ("" when none).
        position: Current slot (0-based); equals ``n_slots`` when the session is complete.
        n_slots: Slots in the session.
        left_path / right_path: Images to show on the left and right.
        left_label / right_label: Their labels (the target is always labelled, the method never named).
        instruction: Extra line for trap items ("" otherwise), drawn into the image too.
        done: The session is complete.
        finished: The rater can get no further session (cap reached or nothing left).
        completion_code: Code to paste back into the crowd platform, when ``done``.
        message: Text for the rater.
        mode: ``"mos"`` or ``"pairwise"``.
        sessions_done: Completed sessions of this rater in this study.
    """

    study_id: str
    rater_id: str
    assignment_id: str = ""
    position: int = 0
    n_slots: int = 0
    left_path: str | None = None
    right_path: str | None = None
    left_label: str = ""
    right_label: str = ""
    instruction: str = ""
    done: bool = False
    finished: bool = False
    completion_code: str = ""
    message: str = ""
    mode: str = "mos"
    sessions_done: int = 0

    @property
    def slot_token(self) -> str:
        """``<assignment_id>:<position>``: names the slot a submit refers to (makes double clicks harmless)."""
        return f"{self.assignment_id}:{self.position}" if self.assignment_id else ""

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (for ``gr.State`` and JSON)."""
        return asdict(self)


@dataclass
class SubmitResult:
    """Outcome of a submit: ``status`` is ``recorded`` or ``duplicate`` (already stored, nothing written)."""

    status: str
    rating_id: str
    view: RaterView
    record: dict[str, Any] = field(default_factory=dict)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _find_image(folder: Path, stem: str) -> Path | None:
    for ext in IMAGE_EXTS:
        for cand in (folder / f"{stem}{ext}", folder / f"{stem}{ext.upper()}"):
            if cand.is_file():
                return cand
    return None


def discover_run(
    run_dir: str | Path, methods: Sequence[str] | None = None, scenes: Sequence[str] | None = None
) -> tuple[dict[str, dict[str, Path]], dict[str, Path]]:
    """Find rendered images and targets in an evaluation run folder.

    Layout: ``RUN_DIR/predictions/<method>/<id>.<ext>`` and ``RUN_DIR/targets/<id>.<ext>``.

    Args:
        run_dir: The evaluation run folder.
        methods: Methods to use (default: every folder under ``predictions/``).
        scenes: Scene ids to use (default: ids that every chosen method rendered and that have a target).

    Returns:
        ``(predictions[method][scene] -> path, targets[scene] -> path)`` restricted to complete scenes.

    Raises:
        StudyError: When folders, methods or scenes are missing.
    """
    run = Path(run_dir)
    pred_root, tgt_root = run / "predictions", run / "targets"
    if not pred_root.is_dir() or not tgt_root.is_dir():
        raise StudyError(f"{run} is not an evaluation run folder: it needs predictions/<method>/ and targets/")
    available = sorted(p.name for p in pred_root.iterdir() if p.is_dir())
    chosen = list(methods) if methods else available
    missing = [m for m in chosen if m not in available]
    if missing:
        raise StudyError(f"methods {missing} not found in {pred_root}; available: {available}")
    if not chosen:
        raise StudyError(f"no method folders under {pred_root}")
    targets = {p.stem: p for p in sorted(tgt_root.iterdir()) if p.suffix.lower() in IMAGE_EXTS}
    preds: dict[str, dict[str, Path]] = {}
    for m in chosen:
        preds[m] = {p.stem: p for p in sorted((pred_root / m).iterdir()) if p.suffix.lower() in IMAGE_EXTS}
    common = set(targets)
    for m in chosen:
        common &= set(preds[m])
    if scenes:
        bad = [s for s in scenes if s not in common]
        if bad:
            raise StudyError(f"scenes {bad} lack a target or a rendering by every method {chosen}")
        common = set(scenes)
    if not common:
        raise StudyError(f"no scene has a target and a rendering by every method {chosen} in {run}")
    keep = sorted(common)
    return {m: {s: preds[m][s] for s in keep} for m in chosen}, {s: targets[s] for s in keep}


def _trap_image(src: Path, dst: Path, text: str) -> None:
    with Image.open(src) as im:
        img = im.convert("RGB")
    w, h = img.size
    draw = ImageDraw.Draw(img)
    size = max(12, w // 28)
    try:
        font = ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        font = ImageFont.load_default()
    band = int(size * 3.2)
    top = (h - band) // 2
    draw.rectangle([0, top, w, top + band], fill=(255, 255, 255))
    draw.multiline_text((w // 30, top + size // 2), text, fill=(200, 0, 0), font=font, spacing=size // 3)
    tmp = dst.with_name(dst.name + ".tmp.png")
    img.save(tmp)
    tmp.replace(dst)


def _copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.copyfile(src, tmp)
    tmp.replace(dst)


class StudyService:
    """Database-backed study logic shared by the UI, the CLI and the tests.

    Args:
        db_url: SQLAlchemy URL.
        rater_secret: Key of the rater-id hash.
        data_dir: Where study media are copied (``<data_dir>/studies/<study_id>/``).
        sink: Optional object with ``append(record: dict)`` that receives every stored rating (Hub JSONL).
    """

    def __init__(self, db_url: str, *, rater_secret: str, data_dir: str | Path, sink: Any = None) -> None:
        self.db_url = db_url
        self.engine = make_engine(db_url)
        self.Session = make_sessionmaker(self.engine)
        self.secret = rater_secret
        self.data_dir = Path(data_dir)
        self.sink = sink
        self._dialect = self.engine.dialect.name
        self._configs: dict[str, tuple[str, StudyConfig]] = {}  # parsed configs by study id, checked by hash

    @classmethod
    def from_settings(cls, settings: Settings, sink: Any = None) -> StudyService:
        """Build from :class:`~user_study.config.Settings`."""
        return cls(settings.db_url, rater_secret=settings.rater_secret, data_dir=settings.data_dir, sink=sink)

    def close(self) -> None:
        """Dispose of the connection pool."""
        self.engine.dispose()

    def _insert(self, table: Any) -> Any:
        return (pg_insert if self._dialect == "postgresql" else sqlite_insert)(table)

    # ------------------------------------------------------------------ create
    def create_study(
        self,
        run_dir: str | Path,
        config: StudyConfig,
        *,
        study_id: str | None = None,
        methods: Sequence[str] | None = None,
        scenes: Sequence[str] | None = None,
        n_gold: int | None = None,
        n_trap: int | None = None,
        n_hidden_ref: int | None = None,
    ) -> str:
        """Create a study from an evaluation run folder (methods x scenes); media are copied into the data dir.

        Args:
            run_dir: Evaluation run folder (``predictions/<method>/<id>.png``, ``targets/<id>.<ext>``).
            config: Study configuration.
            study_id: Id to use (letters, digits, ``-``, ``_``); default a new uuid.
            methods: Methods to include (default all). In pairwise mode every pair of them becomes items.
            scenes: Scene ids to include (default all complete ones).
            n_gold / n_trap / n_hidden_ref: Control items to build (default: one per scene, gold needs >= 2
                scenes, trap items cycle through the scale values 0-4).

        Returns:
            The study id.
        """
        sid = study_id or new_id()[:12]
        if not sid.replace("-", "").replace("_", "").isalnum():
            raise StudyError(f"study id {sid!r} may only contain letters, digits, '-' and '_'")
        preds, targets = discover_run(run_dir, methods, scenes)
        scene_names = list(targets)
        method_names = list(preds)
        if config.mode == "pairwise" and len(method_names) < 2:
            raise StudyError(f"pairwise mode needs at least two methods, got {method_names}")
        media = (self.data_dir / "studies" / sid).absolute()
        with self.Session() as s:
            if s.get(Study, sid) is not None:
                raise StudyError(f"study {sid!r} already exists; choose another --study-id")
        rng = random.Random(config.seed)
        s_hash: dict[str, str] = {}
        tpaths: dict[str, Path] = {}
        for scene, path in targets.items():
            dst = media / "targets" / f"{scene}{path.suffix.lower()}"
            _copy(path, dst)
            tpaths[scene] = dst
            s_hash[scene] = _sha256(dst)
        ppaths: dict[str, dict[str, Path]] = {}
        for mi, m in enumerate(method_names):
            ppaths[m] = {}
            for scene, path in preds[m].items():
                dst = media / "items" / f"m{mi}" / f"{scene}{path.suffix.lower()}"
                _copy(path, dst)
                ppaths[m][scene] = dst
        with self.Session() as s, s.begin():
            study = Study(
                id=sid,
                title=config.title,
                config=config.to_dict(),
                config_sha256=config.sha256(),
                media_dir=str(media),
                source_run=str(Path(run_dir).absolute()),
            )
            s.add(study)
            s.flush()
            mrows = {m: Method(study_id=sid, name=m, alias=f"m{i}") for i, m in enumerate(method_names)}
            srows = {
                sc: Scene(study_id=sid, name=sc, target_path=str(tpaths[sc]), target_sha256=s_hash[sc])
                for sc in scene_names
            }
            s.add_all([*mrows.values(), *srows.values()])
            s.flush()
            items: list[Item] = []
            if config.mode == "mos":
                for m in method_names:
                    for sc in scene_names:
                        p = ppaths[m][sc]
                        items.append(self._item(sid, srows[sc], "test", p, method=mrows[m]))
            else:
                for i, a in enumerate(method_names):
                    for b in method_names[i + 1 :]:
                        for sc in scene_names:
                            items.append(
                                self._item(
                                    sid,
                                    srows[sc],
                                    "pair",
                                    ppaths[a][sc],
                                    method=mrows[a],
                                    method_b=mrows[b],
                                    image_b=ppaths[b][sc],
                                )
                            )
            if config.mode == "mos":
                n_h = len(scene_names) if n_hidden_ref is None else n_hidden_ref
                for sc in rng.sample(scene_names, min(n_h, len(scene_names))):
                    items.append(self._item(sid, srows[sc], "hidden_ref", tpaths[sc], expected=0, tol=1))
                if len(scene_names) >= 2:
                    n_g = len(scene_names) if n_gold is None else n_gold
                    for sc in rng.sample(scene_names, min(n_g, len(scene_names))):
                        other = rng.choice([o for o in scene_names if o != sc])
                        items.append(self._item(sid, srows[sc], "gold", tpaths[other], expected=4, tol=1))
                n_t = len(scene_names) if n_trap is None else n_trap
                for k in range(n_t):
                    sc = scene_names[k % len(scene_names)]
                    m = method_names[k % len(method_names)]
                    want = (k * 2 + 1) % 5
                    text = (
                        f"ATTENTION CHECK: ignore the comparison and\n"
                        f'select "{want} - {config.scale_labels[want]}" for this item.'
                    )
                    dst = media / "traps" / f"trap{k}_{sc}.png"
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    _trap_image(ppaths[m][sc], dst, text)
                    items.append(
                        self._item(
                            sid,
                            srows[sc],
                            "trap",
                            dst,
                            expected=want,
                            tol=0,
                            instruction=f'Attention check: select "{want}" for this item.',
                        )
                    )
            s.add_all(items)
            s.add(Event(study_id=sid, kind="study_created", detail={"run": str(run_dir), "items": len(items)}))
        return sid

    @staticmethod
    def _item(
        sid: str,
        scene: Scene,
        kind: str,
        path: Path,
        *,
        method: Method | None = None,
        method_b: Method | None = None,
        image_b: Path | None = None,
        expected: int | None = None,
        tol: int | None = None,
        instruction: str = "",
    ) -> Item:
        # deterministic id: the same study id built from the same run gets the same item ids, so ratings
        # backed up to the Hub can be restored into a fresh database (see ``restore_records``)
        key = "|".join(
            [
                sid,
                kind,
                scene.name,
                method.name if method else "",
                method_b.name if method_b else "",
                f"{path.parent.name}/{path.name}",
            ]
        )
        return Item(
            id=hashlib.sha256(key.encode()).hexdigest()[:32],
            study_id=sid,
            scene_id=scene.id,
            method_id=method.id if method else None,
            method_b_id=method_b.id if method_b else None,
            kind=kind,
            image_path=str(path),
            image_b_path=str(image_b) if image_b else None,
            sha256=_sha256(path),
            expected_score=expected,
            tolerance=tol,
            instruction=instruction,
        )

    # ------------------------------------------------------------------ helpers
    def study_config(self, study_id: str) -> StudyConfig:
        """The stored config of a study (raises :class:`StudyError` for an unknown id)."""
        with self.Session() as s:
            return self._config(s, study_id)[1]

    def _config(self, s: Session, study_id: str) -> tuple[Study, StudyConfig]:
        study = s.get(Study, study_id) if study_id else None
        if study is None:
            known = s.scalars(select(Study.id).order_by(Study.created_at).limit(20)).all()
            raise StudyError(f"unknown study {study_id!r}; known studies: {list(known)}")
        cached = self._configs.get(study.id)
        if cached is None or cached[0] != study.config_sha256:
            cached = self._configs[study.id] = (study.config_sha256, StudyConfig.from_dict(study.config))
        return study, cached[1]

    def list_studies(self) -> list[dict[str, Any]]:
        """Id, title, mode and creation time of every study."""
        with self.Session() as s:
            return [
                {"id": st.id, "title": st.title, "mode": st.config.get("mode", "mos"), "created_at": st.created_at}
                for st in s.scalars(select(Study).order_by(Study.created_at))
            ]

    def rater_id(self, external_id: str, source: str = "link") -> str:
        """Keyed hash of an external rater id."""
        return hash_rater(self.secret, source, external_id)

    def _ensure_rater(self, s: Session, rid: str, source: str) -> Rater:
        s.execute(self._insert(Rater).values(id=rid, source=source, first_seen=utcnow()).on_conflict_do_nothing())
        return s.get(Rater, rid)

    def _completion_code(self, cfg: StudyConfig, assignment_id: str) -> str:
        if cfg.completion_code:
            return cfg.completion_code
        return hmac.new(self.secret.encode(), f"code:{assignment_id}".encode(), hashlib.sha256).hexdigest()[:10].upper()

    # ------------------------------------------------------------------ rater flow
    def begin(
        self, study_id: str, external_id: str, source: str = "link", *, now: dt.datetime | None = None
    ) -> RaterView:
        """Resume the rater's open session or start a new one; returns what to show.

        Args:
            study_id: Study id (from ``?study=``).
            external_id: Platform id / invite code / username (hashed at once, never stored).
            source: Origin of the id (``link``, ``prolific``, ``mturk``, ``invite``, ``hf_oauth``).
            now: Server time override (tests).
        """
        try:
            rid = self.rater_id(external_id, source)
        except ValueError as exc:
            raise StudyError(str(exc)) from exc
        for attempt in range(3):
            try:
                return self._begin(study_id, rid, source, now or utcnow())
            except IntegrityError:  # a parallel request opened the same session number: resume that one
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _begin(self, study_id: str, rid: str, source: str, now: dt.datetime) -> RaterView:
        with self.Session() as s, s.begin():
            study, cfg = self._config(s, study_id)
            rater = self._ensure_rater(s, rid, source)
            if rater.blocked:
                raise StudyError("this rater link is blocked for this study; contact the organizer")
            if study.status != "open":
                raise StudyError(f"study {study_id!r} is {study.status}, not open for ratings")
            sessions = s.scalars(
                select(Assignment).where(Assignment.study_id == study_id, Assignment.rater_id == rid)
            ).all()
            n_done = sum(a.status == "completed" for a in sessions)
            for a in sessions:
                if a.status == "open" and a.expires_at <= now:
                    a.status = "expired"
                    s.add(Event(study_id=study_id, rater_id=rid, assignment_id=a.id, kind="session_expired"))
            current = next((a for a in sessions if a.status == "open"), None)
            if current is not None:
                s.add(Event(study_id=study_id, rater_id=rid, assignment_id=current.id, kind="session_resumed"))
                return self._view(s, study, cfg, current, rid, now, n_done)
            if len(sessions) >= cfg.max_sessions_per_rater:
                return RaterView(
                    study_id,
                    rid,
                    finished=True,
                    mode=cfg.mode,
                    sessions_done=n_done,
                    message=f"You have done the maximum of {cfg.max_sessions_per_rater} sessions. Thank you!",
                )
            slots = self._plan(s, study_id, rid, cfg, now)
            if not slots:
                return RaterView(
                    study_id,
                    rid,
                    finished=True,
                    mode=cfg.mode,
                    sessions_done=n_done,
                    message="There is nothing left for you to rate in this study. Thank you!",
                )
            seq = max((a.seq for a in sessions), default=0) + 1
            a = Assignment(
                id=new_id(),
                study_id=study_id,
                rater_id=rid,
                seq=seq,
                created_at=now,
                expires_at=now + dt.timedelta(minutes=cfg.session_ttl_min),
                status="open",
                seed=random.getrandbits(31),
                app_version=APP_VERSION,
            )
            a.completion_code = self._completion_code(cfg, a.id)
            s.add(a)
            s.flush()
            s.add_all(Slot(assignment_id=a.id, position=i, item_id=p.item_id, swap=p.swap) for i, p in enumerate(slots))
            s.add(
                Event(
                    study_id=study_id,
                    rater_id=rid,
                    assignment_id=a.id,
                    kind="session_started",
                    detail={"slots": len(slots)},
                )
            )
            s.flush()
            return self._view(s, study, cfg, a, rid, now, n_done)

    def _plan(self, s: Session, study_id: str, rid: str, cfg: StudyConfig, now: dt.datetime) -> list:
        items = s.execute(
            select(Item.id, Item.kind, Item.scene_id, Item.method_id, Item.method_b_id).where(Item.study_id == study_id)
        ).all()
        rated = dict(
            s.execute(
                select(Rating.item_id, func.count())
                .where(Rating.study_id == study_id, ~Rating.excluded)
                .group_by(Rating.item_id)
            ).all()
        )
        # open leases: slots of open, unexpired sessions whose item the session's rater has not rated yet
        leases = dict(
            s.execute(
                select(Slot.item_id, func.count())
                .join(Assignment, Assignment.id == Slot.assignment_id)
                .outerjoin(Rating, and_(Rating.rater_id == Assignment.rater_id, Rating.item_id == Slot.item_id))
                .where(
                    Assignment.study_id == study_id,
                    Assignment.status == "open",
                    Assignment.expires_at > now,
                    Rating.id.is_(None),
                )
                .group_by(Slot.item_id)
            ).all()
        )
        seen = set(s.scalars(select(Rating.item_id).where(Rating.rater_id == rid, Rating.study_id == study_id)))
        seen |= set(
            s.scalars(
                select(Slot.item_id)
                .join(Assignment, Assignment.id == Slot.assignment_id)
                .where(Assignment.rater_id == rid, Assignment.study_id == study_id)
            )
        )
        cands = [
            Candidate(i.id, i.kind, i.scene_id, (i.method_id, i.method_b_id), rated.get(i.id, 0) + leases.get(i.id, 0))
            for i in items
        ]
        n_controls = {}
        if cfg.mode == "mos":
            n_controls = {
                "hidden_ref": cfg.hidden_ref_per_session,
                "gold": cfg.gold_per_session,
                "trap": cfg.trap_per_session,
            }
        return plan_session(
            cands,
            seen=seen,
            n_test=cfg.items_per_session,
            n_controls=n_controls,
            target_votes=cfg.target_votes_per_item,
            pairing=cfg.pairing,
            rng=random.Random(),
        )

    @staticmethod
    def _slot_rows(s: Session, aid: str, rid: str) -> list[Any]:
        """All slots of a session with the rater's rating (if any), the item and the target: one query."""
        return s.execute(
            select(
                Slot,
                Rating.id.label("rating_id"),
                Rating.score.label("stored_score"),
                Item.image_path,
                Item.image_b_path,
                Item.instruction,
                Scene.target_path,
            )
            .join(Item, Item.id == Slot.item_id)
            .join(Scene, Scene.id == Item.scene_id)
            .outerjoin(Rating, and_(Rating.rater_id == rid, Rating.item_id == Slot.item_id))
            .where(Slot.assignment_id == aid)
            .order_by(Slot.position)
        ).all()

    def _view(
        self,
        s: Session,
        study: Study,
        cfg: StudyConfig,
        a: Assignment,
        rid: str,
        now: dt.datetime,
        n_done: int | None,
        rows: list[Any] | None = None,
        just_rated: int | None = None,
    ) -> RaterView:
        rows = self._slot_rows(s, a.id, rid) if rows is None else rows
        n = len(rows)
        pending = [r for r in rows if r.rating_id is None and r.Slot.position != just_rated]
        view = RaterView(study.id, rid, assignment_id=a.id, n_slots=n, mode=cfg.mode, sessions_done=n_done or 0)
        if not pending:
            if n_done is None:
                n_done = s.scalar(
                    select(func.count())
                    .select_from(Assignment)
                    .where(
                        Assignment.study_id == study.id, Assignment.rater_id == rid, Assignment.status == "completed"
                    )
                )
                view.sessions_done = n_done
            if a.status != "completed":
                a.status, a.completed_at = "completed", now
                s.add(Event(study_id=study.id, rater_id=rid, assignment_id=a.id, kind="session_completed"))
                view.sessions_done = n_done + 1
            view.position, view.done = n, True
            view.completion_code = a.completion_code
            more = view.sessions_done < cfg.max_sessions_per_rater
            view.message = "Session complete. Thank you!" + (" You may start another session." if more else "")
            view.finished = not more
            return view
        row = pending[0]
        slot = row.Slot
        if slot.shown_at is None:
            slot.shown_at = now
        view.position = slot.position
        view.instruction = row.instruction
        if cfg.mode == "pairwise":
            a_path, b_path = row.image_path, row.image_b_path
            view.left_path, view.right_path = (b_path, a_path) if slot.swap else (a_path, b_path)
            view.left_label, view.right_label = "Left image", "Right image"
        else:
            target, shown = row.target_path, row.image_path
            if slot.swap:
                view.left_path, view.right_path = target, shown
                view.left_label, view.right_label = "Target (DSLR photo)", "Rendered image"
            else:
                view.left_path, view.right_path = shown, target
                view.left_label, view.right_label = "Rendered image", "Target (DSLR photo)"
        return view

    def submit(
        self,
        rater_id: str,
        slot_token: str,
        score: int | str | None,
        *,
        now: dt.datetime | None = None,
        client: dict[str, Any] | None = None,
    ) -> SubmitResult:
        """Validate a rating against the rater's assignment and store it exactly once.

        Args:
            rater_id: Hashed rater id (from the server-side state, never from the client).
            slot_token: ``<assignment_id>:<position>`` of the slot being rated (from the page).
            score: 0-4 (MOS mode) or 0 = left, 1 = right, 2 = no preference (pairwise mode).
            now: Server time override (tests).
            client: Optional non-personal client info to keep in the audit trail.

        Returns:
            ``recorded`` with the next view, or ``duplicate`` when this slot was already rated (nothing written).

        Raises:
            SubmitRejected: Wrong session or slot, expired session, out-of-order slot, too fast, bad score.
        """
        now = now or utcnow()
        try:
            aid, pos_s = str(slot_token).rsplit(":", 1)
            position = int(pos_s)
        except ValueError:
            raise SubmitRejected(
                "bad_slot", f"malformed slot {slot_token!r}; expected '<session>:<position>'"
            ) from None
        try:
            result = self._submit(rater_id, aid, position, score, now, client)
        except SubmitRejected as exc:
            if exc.code != "too_fast":  # rejected submits are rolled back; log them in their own transaction
                with self.Session() as s, s.begin():
                    s.add(
                        Event(
                            rater_id=rater_id,
                            assignment_id=aid,
                            kind="submit_rejected",
                            detail={"code": exc.code, "slot": slot_token},
                        )
                    )
            raise
        if self.sink is not None and result.status == "recorded":
            self.sink.append(result.record)
        return result

    def _submit(
        self, rater_id: str, aid: str, position: int, score: Any, now: dt.datetime, client: dict[str, Any] | None
    ) -> SubmitResult:
        with self.Session() as s, s.begin():
            a = s.get(Assignment, aid, with_for_update=True)  # serialises submits of one session (PostgreSQL)
            if a is None or a.rater_id != rater_id:
                raise SubmitRejected("wrong_session", "this session does not belong to you; reload the page")
            study, cfg = self._config(s, a.study_id)
            rows = self._slot_rows(s, aid, rater_id)
            row = next((r for r in rows if r.Slot.position == position), None)
            if row is None:
                raise SubmitRejected("bad_slot", f"session has no position {position}")
            slot = row.Slot
            n_done = None  # counted only when this submit completes the session
            if row.rating_id is not None:
                s.add(
                    Event(
                        study_id=a.study_id,
                        rater_id=rater_id,
                        assignment_id=aid,
                        kind="duplicate_submit",
                        detail={"position": position, "score": str(score), "stored": row.stored_score},
                    )
                )
                view = self._view(s, study, cfg, a, rater_id, now, n_done, rows)
                return SubmitResult("duplicate", row.rating_id, view)
            value = self._parse_score(cfg, score)
            if a.status != "open" or a.expires_at <= now:
                raise SubmitRejected("expired", "this session has expired; reload the page to get a new one")
            first_pending = next((r.Slot.position for r in rows if r.rating_id is None), None)
            if first_pending != position:
                raise SubmitRejected("out_of_order", f"item {position + 1} is not the current one; reload the page")
            if slot.shown_at is None:
                raise SubmitRejected("not_shown", "this item has not been shown yet; reload the page")
            view_ms = (now - slot.shown_at).total_seconds() * 1000.0
            if view_ms < cfg.min_view_ms:
                left = max(0.1, (cfg.min_view_ms - view_ms) / 1000.0)
                raise SubmitRejected("too_fast", f"Please look at both images a little longer ({left:.1f} s).")
            if cfg.mode == "pairwise" and value in (0, 1) and slot.swap:
                value = 1 - value  # left/right on screen -> A/B
            rating_id = new_id()
            res = s.execute(
                self._insert(Rating)
                .values(
                    id=rating_id,
                    study_id=a.study_id,
                    rater_id=rater_id,
                    item_id=slot.item_id,
                    assignment_id=aid,
                    position=position,
                    score=value,
                    swap=slot.swap,
                    shown_at=slot.shown_at,
                    submitted_at=now,
                    view_ms=view_ms,
                    source="app",
                    excluded=False,
                    exclusion_reason="",
                )
                .on_conflict_do_nothing()
                .returning(Rating.id)
            ).scalar()
            if res is None:  # lost a race with an identical submit: first write wins
                stored = s.scalar(select(Rating).where(Rating.rater_id == rater_id, Rating.item_id == slot.item_id))
                return SubmitResult("duplicate", stored.id, self._view(s, study, cfg, a, rater_id, now, n_done))
            ttl = dt.timedelta(minutes=cfg.session_ttl_min)
            if a.expires_at - now < ttl / 2:  # keep an active session's lease alive (written only now and then)
                a.expires_at = now + ttl
            record = {
                "rating_id": rating_id,
                "study_id": a.study_id,
                "rater_id": rater_id,
                "item_id": slot.item_id,
                "session_id": aid,
                "position": position,
                "score": value,
                "swap": slot.swap,
                "shown_at": slot.shown_at.isoformat(),
                "submitted_at": now.isoformat(),
                "view_ms": view_ms,
                "study_config_sha256": study.config_sha256,
                "app_version": APP_VERSION,
            }
            if client:
                record["client"] = client
            view = self._view(s, study, cfg, a, rater_id, now, n_done, rows, just_rated=position)
        return SubmitResult("recorded", rating_id, view, record)

    @staticmethod
    def _parse_score(cfg: StudyConfig, score: int | str | None) -> int:
        allowed = list(PAIRWISE_CHOICES) if cfg.mode == "pairwise" else list(range(5))
        try:
            value = int(score)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            value = None
        if value is None or value not in allowed or (isinstance(score, float) and not float(score).is_integer()):
            raise SubmitRejected("bad_score", f"score {score!r} is not allowed; choose one of {allowed}")
        return value

    # ------------------------------------------------------------------ organizer
    def ratings_frame(self, study_id: str) -> pd.DataFrame:
        """Every rating of a study joined with item, method, scene and session (one row per rating)."""
        from sqlalchemy.orm import aliased

        mb = aliased(Method)
        with self.Session() as s:
            self._config(s, study_id)
            rows = s.execute(
                select(
                    Rating.id.label("rating_id"),
                    Rating.rater_id,
                    Rating.item_id,
                    Rating.assignment_id.label("session_id"),
                    Rating.position,
                    Rating.score,
                    Rating.swap,
                    Rating.shown_at,
                    Rating.submitted_at,
                    Rating.view_ms,
                    Rating.source,
                    Rating.excluded,
                    Rating.exclusion_reason,
                    Item.kind,
                    Item.expected_score,
                    Item.tolerance,
                    Method.name.label("method"),
                    mb.name.label("method_b"),
                    Scene.name.label("scene"),
                )
                .join(Item, Item.id == Rating.item_id)
                .join(Scene, Scene.id == Item.scene_id)
                .outerjoin(Method, Method.id == Item.method_id)
                .outerjoin(mb, mb.id == Item.method_b_id)
                .where(Rating.study_id == study_id)
                .order_by(Rating.submitted_at, Rating.id)
            ).all()
        cols = [
            "rating_id",
            "rater_id",
            "item_id",
            "session_id",
            "position",
            "score",
            "swap",
            "shown_at",
            "submitted_at",
            "view_ms",
            "source",
            "excluded",
            "exclusion_reason",
            "kind",
            "expected_score",
            "tolerance",
            "method",
            "method_b",
            "scene",
        ]
        return pd.DataFrame([tuple(r) for r in rows], columns=cols)

    def items_frame(self, study_id: str) -> pd.DataFrame:
        """Every item with its method, scene and kind."""
        with self.Session() as s:
            self._config(s, study_id)
            rows = s.execute(
                select(Item.id, Item.kind, Method.name, Scene.name, Item.expected_score)
                .join(Scene, Scene.id == Item.scene_id)
                .outerjoin(Method, Method.id == Item.method_id)
                .where(Item.study_id == study_id)
            ).all()
        return pd.DataFrame([tuple(r) for r in rows], columns=["item_id", "kind", "method", "scene", "expected_score"])

    def status(self, study_id: str, *, now: dt.datetime | None = None) -> dict[str, Any]:
        """Progress per method and item kind, sessions, raters and exclusions."""
        now = now or utcnow()
        cfg = self.study_config(study_id)
        items = self.items_frame(study_id)
        ratings = self.ratings_frame(study_id)
        counts = ratings.groupby("item_id").size() if len(ratings) else pd.Series(dtype=int)
        items["n_ratings"] = items["item_id"].map(counts).fillna(0).astype(int)
        tests = items[items["kind"].isin(["test", "pair"])]
        per_method = (
            tests.groupby(tests["method"].fillna("-"))
            .agg(items=("item_id", "size"), ratings=("n_ratings", "sum"), min_votes=("n_ratings", "min"))
            .reset_index()
        )
        per_method["target_votes"] = cfg.target_votes_per_item
        per_method["done_pct"] = (
            100.0
            * tests.assign(c=tests["n_ratings"].clip(upper=cfg.target_votes_per_item))
            .groupby(tests["method"].fillna("-"))["c"]
            .sum()
            .values
            / (per_method["items"] * cfg.target_votes_per_item)
        ).round(1)
        with self.Session() as s:
            sess = s.execute(
                select(Assignment.status, Assignment.expires_at).where(Assignment.study_id == study_id)
            ).all()
        n_open = sum(st == "open" and exp > now for st, exp in sess)
        return {
            "study_id": study_id,
            "mode": cfg.mode,
            "per_method": per_method,
            "per_kind": items.groupby("kind")["n_ratings"]
            .agg(["size", "sum"])
            .reset_index()
            .rename(columns={"size": "items", "sum": "ratings"}),
            "per_item": items,
            "n_ratings": int(len(ratings)),
            "n_raters": int(ratings["rater_id"].nunique()) if len(ratings) else 0,
            "sessions": {
                "open": n_open,
                "completed": sum(st == "completed" for st, _ in sess),
                "expired": sum(st == "expired" or (st == "open" and exp <= now) for st, exp in sess),
            },
            "excluded_manual": int(ratings["excluded"].sum()) if len(ratings) else 0,
        }

    def exclude(
        self, study_id: str, *, reason: str, rating_ids: Iterable[str] = (), rater_ids: Iterable[str] = ()
    ) -> int:
        """Exclude ratings (by id, or all of given raters) with a reason; nothing is deleted. Returns the count."""
        if not reason.strip():
            raise StudyError("an exclusion needs a reason")
        rating_ids, rater_ids = list(rating_ids), list(rater_ids)
        with self.Session() as s, s.begin():
            self._config(s, study_id)
            cond = Rating.id.in_(rating_ids) if rating_ids else Rating.rater_id.in_(rater_ids)
            n = s.execute(
                update(Rating).where(Rating.study_id == study_id, cond).values(excluded=True, exclusion_reason=reason)
            ).rowcount
            s.add(
                Event(
                    study_id=study_id,
                    kind="excluded",
                    detail={"reason": reason, "ratings": rating_ids, "raters": rater_ids, "n": n},
                )
            )
        return int(n)

    def block_rater(self, rater_id: str, blocked: bool = True, note: str = "") -> None:
        """Block (or unblock) a hashed rater id from starting sessions."""
        with self.Session() as s, s.begin():
            r = s.get(Rater, rater_id)
            if r is None:
                raise StudyError(f"unknown rater {rater_id!r}")
            r.blocked, r.notes = blocked, note
            s.add(Event(rater_id=rater_id, kind="blocked" if blocked else "unblocked", detail={"note": note}))

    def import_ratings(self, study_id: str, frame: pd.DataFrame, *, source: str = "import") -> dict[str, int]:
        """Import ratings collected elsewhere.

        ``frame`` needs columns ``rater`` (external id, hashed here), ``score`` and either ``item_id`` or
        ``method`` + ``scene``; optional ``submitted_at``. Rows for an existing (rater, item) are skipped.

        Returns:
            ``{"imported": n, "duplicates": n}``.
        """
        needed = {"rater", "score"}
        if not needed <= set(frame.columns) or not (
            {"item_id"} <= set(frame.columns) or {"method", "scene"} <= set(frame.columns)
        ):
            raise StudyError(
                f"import needs columns rater, score and item_id or method+scene; got {list(frame.columns)}"
            )
        items = self.items_frame(study_id)
        cfg = self.study_config(study_id)
        lookup = {
            (m, sc): i
            for i, k, m, sc in items[["item_id", "kind", "method", "scene"]].itertuples(index=False)
            if k in ("test", "pair")
        }
        valid_ids = set(items["item_id"])
        imported = dupes = 0
        with self.Session() as s, s.begin():
            for row in frame.to_dict("records"):
                if "item_id" in row and isinstance(row.get("item_id"), str) and row["item_id"]:
                    item_id = row["item_id"]
                    if item_id not in valid_ids:
                        raise StudyError(f"item_id {item_id!r} is not in study {study_id!r}")
                else:
                    key = (str(row["method"]), str(row["scene"]))
                    if key not in lookup:
                        raise StudyError(f"no item for method={key[0]!r}, scene={key[1]!r} in study {study_id!r}")
                    item_id = lookup[key]
                value = self._parse_score(cfg, row["score"])
                rid = self.rater_id(str(row["rater"]), source)
                self._ensure_rater(s, rid, source)
                when = pd.to_datetime(row.get("submitted_at"), utc=True, errors="coerce")
                when = utcnow() if pd.isna(when) else when.tz_convert(None).to_pydatetime()
                res = s.execute(
                    self._insert(Rating)
                    .values(
                        id=new_id(),
                        study_id=study_id,
                        rater_id=rid,
                        item_id=item_id,
                        score=value,
                        submitted_at=when,
                        source=source,
                        excluded=False,
                        exclusion_reason="",
                    )
                    .on_conflict_do_nothing()
                    .returning(Rating.id)
                ).scalar()
                imported += res is not None
                dupes += res is None
            s.add(Event(study_id=study_id, kind="imported", detail={"source": source, "n": imported, "dupes": dupes}))
        return {"imported": imported, "duplicates": dupes}

    def restore_records(self, study_id: str, records: Iterable[dict[str, Any]]) -> dict[str, int]:
        """Insert rating records written by the Hub sink (JSON lines) into this database.

        For a fresh database after a restart: re-create the study with the same id from the same run (item ids
        are deterministic), then restore. Rater ids are already hashed and are kept; sessions come back as
        ``restored`` sessions so that session-level QC still applies. Records already present are skipped.

        Returns:
            ``{"restored": n, "skipped": n}``.
        """
        restored = skipped = 0
        with self.Session() as s, s.begin():
            self._config(s, study_id)
            items = set(s.scalars(select(Item.id).where(Item.study_id == study_id)))
            known_sessions = set(s.scalars(select(Assignment.id).where(Assignment.study_id == study_id)))
            for rec in records:
                if rec.get("study_id") != study_id:
                    skipped += 1
                    continue
                if rec["item_id"] not in items:
                    raise StudyError(
                        f"item {rec['item_id']!r} is not in study {study_id!r}: re-create the study with the same "
                        "id from the same evaluation run before restoring"
                    )
                rid = str(rec["rater_id"])
                self._ensure_rater(s, rid, "restore")
                aid = rec.get("session_id")
                if aid and aid not in known_sessions:
                    seq = -1 - int(
                        s.scalar(
                            select(func.count())
                            .select_from(Assignment)
                            .where(Assignment.study_id == study_id, Assignment.rater_id == rid, Assignment.seq < 0)
                        )
                    )
                    when = dt.datetime.fromisoformat(rec["submitted_at"])
                    s.add(
                        Assignment(
                            id=aid,
                            study_id=study_id,
                            rater_id=rid,
                            seq=seq,
                            created_at=when,
                            expires_at=when,
                            status="restored",
                            seed=0,
                            app_version=rec.get("app_version", ""),
                        )
                    )
                    s.flush()
                    known_sessions.add(aid)
                res = s.execute(
                    self._insert(Rating)
                    .values(
                        id=rec["rating_id"],
                        study_id=study_id,
                        rater_id=rid,
                        item_id=rec["item_id"],
                        assignment_id=aid or None,
                        position=rec.get("position"),
                        score=int(rec["score"]),
                        swap=rec.get("swap"),
                        shown_at=dt.datetime.fromisoformat(rec["shown_at"]) if rec.get("shown_at") else None,
                        submitted_at=dt.datetime.fromisoformat(rec["submitted_at"]),
                        view_ms=rec.get("view_ms"),
                        source="restore",
                        excluded=False,
                        exclusion_reason="",
                    )
                    .on_conflict_do_nothing()
                    .returning(Rating.id)
                ).scalar()
                restored += res is not None
                skipped += res is None
            s.add(Event(study_id=study_id, kind="restored", detail={"restored": restored, "skipped": skipped}))
        return {"restored": restored, "skipped": skipped}

    def events_frame(self, study_id: str) -> pd.DataFrame:
        """The audit trail of a study."""
        with self.Session() as s:
            rows = s.execute(
                select(Event.created_at, Event.kind, Event.rater_id, Event.assignment_id, Event.detail)
                .where(Event.study_id == study_id)
                .order_by(Event.id)
            ).all()
        return pd.DataFrame(
            [(c, k, r, a, json.dumps(d, default=str)) for c, k, r, a, d in rows],
            columns=["created_at", "kind", "rater_id", "session_id", "detail"],
        )
