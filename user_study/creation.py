"""Creating a study from an evaluation run folder: media copied in, items (test and control) built."""

from __future__ import annotations

import hashlib
import random
import shutil
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from evaluation.run_layout import is_run_folder, method_dir, predictions_dir, targets_dir
from user_study.config import StudyConfig
from user_study.storage import (
    Event,
    Item,
    Method,
    Scene,
    Study,
    new_id,
)
from user_study.study_base import IMAGE_EXTS, StudyError, StudyStore

__all__ = ["StudyCreation", "discover_run"]


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

    Layout (:mod:`evaluation.run_layout`): ``RUN_DIR/predictions/<method>/<id>.<ext>`` and
    ``RUN_DIR/targets/<id>.<ext>``.

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
    pred_root, tgt_root = predictions_dir(run), targets_dir(run)
    if not is_run_folder(run):
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
        preds[m] = {p.stem: p for p in sorted(method_dir(run, m).iterdir()) if p.suffix.lower() in IMAGE_EXTS}
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


# Traps do not share one look (a white band across the middle would single them out to a script): each gets its
# own panel colour, text colour, position, width and type size.
_TRAP_PANELS = ((255, 255, 255), (255, 246, 204), (232, 240, 254), (240, 240, 240), (254, 226, 226), (220, 252, 231))
_TRAP_INKS = ((200, 0, 0), (20, 20, 20), (30, 64, 175), (120, 20, 90))
_TRAP_TEXTS = (
    'ATTENTION CHECK: ignore the comparison and\nselect "{want} - {label}" for this item.',
    'Please do not rate this pair.\nChoose "{want} - {label}" instead.',
    'Quality check: whatever you see here,\nanswer "{want} - {label}".',
)


def _trap_text(style: random.Random, want: int, label: str) -> str:
    return style.choice(_TRAP_TEXTS).format(want=want, label=label)


def _trap_image(src: Path, dst: Path, text: str, style: random.Random | None = None) -> None:
    style = style or random.Random(0)
    with Image.open(src) as im:
        img = im.convert("RGB")
    w, h = img.size
    draw = ImageDraw.Draw(img)
    size = max(12, int(w / style.uniform(24, 34)))
    try:
        font = ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        font = ImageFont.load_default()
    band = min(h, int(size * style.uniform(3.0, 3.8)))
    top = int((h - band) * style.uniform(0.1, 0.9))
    left = int(w * style.uniform(0.0, 0.2))
    right = w - int(w * style.uniform(0.0, 0.2))
    draw.rectangle([left, top, right, top + band], fill=style.choice(_TRAP_PANELS))
    draw.multiline_text(
        (left + w // 30, top + size // 2), text, fill=style.choice(_TRAP_INKS), font=font, spacing=size // 3
    )
    tmp = dst.with_name(dst.name + ".tmp.png")
    img.save(tmp)
    tmp.replace(dst)


def _copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.copyfile(src, tmp)
    tmp.replace(dst)


class StudyCreation(StudyStore):
    """Study creation (part of :class:`~user_study.service.StudyService`)."""

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
                    style = random.Random(f"{sid}:trap:{k}")  # apart from rng: the items drawn stay the same
                    text = _trap_text(style, want, config.scale_labels[want])
                    dst = media / "traps" / f"trap{k}_{sc}.png"
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    _trap_image(ppaths[m][sc], dst, text, style)
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
