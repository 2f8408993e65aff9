"""The arena's JSON API, beside the rater API and with its conventions (``user_study.rater_http``): compact JSON,
errors as ``{"error": code, "message": ...}`` with their HTTP status, 413 beyond the body limit, 429 with
``Retry-After`` from the per-client limits (``user_study.rater_limits``: the same client key, proxy rule and
limiter classes as the rater page).

Routes (``ARENA_API`` = ``/arena-api/v1``):

- ``POST ARENA_API/battles``: multipart ``photo`` (file), ``x`` and ``y`` (the subject, in [0, 1] of the width
  and height), optional ``consent=1`` (keep the photo, with the consent recorded). Renders two methods drawn by
  the server on one depth map; returns ``{"battle", "a": {"src"}, "b": {"src"}, "min_look_ms", "depth_source"}``
  (no method names).
- ``GET ARENA_API/images/<token>``: one side of a battle (PNG). When both sides were fetched the battle counts
  as shown; votes are accepted ``min_look_ms`` later.
- ``POST ARENA_API/votes`` ``{"battle", "choice": "a"|"b"|"tie"|"bad"}``: returns ``{"battle", "choice",
  "a": <method>, "b": <method>, "seconds_shown", "status"}``. Refused: 404 ``unknown_battle`` (not shown to this
  client), 409 ``not_shown`` / ``too_fast`` / ``already_voted``, 422 ``bad_choice``, 429 ``rate_limited``.
- ``GET ARENA_API/leaderboard``: ``{"rows": [{"method", "strength", "ci_low", "ci_high", "votes", "win_rate",
  "rank", ...}], "votes", "min_votes_for_rank", ...}`` from the stored votes at the time of the call.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from anyio import to_thread
from fastapi import APIRouter, Request
from fastapi.responses import Response

from user_study.arena.guards import guards_for
from user_study.arena.render import Renderer, decode_photo
from user_study.arena.service import ArenaRefused, ArenaService, get_arena_service, photo_sha256
from user_study.rater_http import ApiError, error_response, json_response, read_body, read_json, retry_after
from user_study.rater_limits import ApiLimits, client_key

__all__ = ["ARENA_API", "board_rows", "build_arena_router", "mount_arena_routes"]

ARENA_API = "/arena-api/v1"
log = logging.getLogger(__name__)
_IMAGE_HEADERS = {"Cache-Control": "private, max-age=3600", "X-Content-Type-Options": "nosniff"}


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def board_rows(board: Any) -> list[dict[str, Any]]:
    """Leaderboard rows as JSON-safe dicts (NaN -> null, numpy -> Python)."""
    rows = []
    for rec in board.to_dict("records"):
        row = {k: _finite(v.item() if hasattr(v, "item") else v) for k, v in rec.items()}
        rows.append(row)
    return rows


def _refused(exc: ArenaRefused) -> Response:
    body: dict[str, Any] = {"error": exc.code, "message": str(exc)}
    headers: dict[str, str] = {}
    if exc.retry_after_s is not None:
        body["retry_after_ms"] = int(math.ceil(exc.retry_after_s * 1000))
        headers = retry_after(exc.retry_after_s)
    return json_response(body, exc.status, headers)


class _VoteGroups:
    """Group commit: votes that arrive while a group is being written wait and go into the next group, one
    transaction (one disk sync) each, so a burst of votes costs a few syncs instead of one per vote."""

    def __init__(self, service: ArenaService, run: Callable[[Callable[[], Any]], Any], max_group: int = 64) -> None:
        self.service, self.run, self.max_group = service, run, max_group
        self.pending: list[tuple[tuple[str, str, str], asyncio.Future]] = []
        self.writing = False

    async def vote(self, battle: str, client: str, choice: str) -> Any:
        future = asyncio.get_running_loop().create_future()
        self.pending.append(((battle, client, choice), future))
        if not self.writing:
            self.writing = True
            asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self.pending:
                group, self.pending = self.pending[: self.max_group], self.pending[self.max_group :]
                try:
                    answers = await self.run(lambda g=group: self.service.vote_many([v for v, _ in g]))
                except Exception as exc:  # noqa: BLE001 - a database failure: every waiting request learns of it
                    for _, future in group:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, future), answer in zip(group, answers, strict=True):
                    if not future.done():
                        future.set_result(answer)
        finally:
            self.writing = False


def build_arena_router(
    service: ArenaService, renderer: Renderer | Callable[[], Renderer], *, limits: ApiLimits | None = None
) -> APIRouter:
    """Routes of the arena API.

    Args:
        service: The shared arena service.
        renderer: Renders a battle (or a zero-argument factory of one, called on the first battle).
        limits: The rater API's limits (body size, proxy hops); default :meth:`ApiLimits.from_env`.
    """
    limits = limits or ApiLimits.from_env()
    cfg = service.config
    guards = guards_for(service, cfg)  # shared with the Space's Arena tab
    router = APIRouter()
    db_thread = (
        ThreadPoolExecutor(1, thread_name_prefix="arena-db") if service.engine.dialect.name == "sqlite" else None
    )

    @functools.cache
    def get_renderer() -> Renderer:
        if isinstance(renderer, type) or not hasattr(renderer, "render"):
            return renderer()  # type: ignore[operator,return-value]
        return renderer  # type: ignore[return-value]

    def run(fn: Callable[[], Any]) -> Any:
        if db_thread is None:
            return to_thread.run_sync(fn)
        return asyncio.get_running_loop().run_in_executor(db_thread, fn)

    groups = _VoteGroups(service, run, max_group=cfg.vote_group)

    def who(request: Request) -> tuple[str, str]:
        key = client_key(request, limits.trusted_proxy_hops)
        return key, service.client_hash(key)

    @router.post(ARENA_API + "/battles")
    async def battles(request: Request) -> Response:
        try:
            key, client = who(request)
            guards.before_battle(key)
            body = await read_body(request, cfg.max_photo_bytes)

            async def receive() -> dict[str, Any]:
                return {"type": "http.request", "body": body, "more_body": False}

            try:
                form = await Request(request.scope, receive).form()
            except Exception:  # noqa: BLE001 - any parse failure of the multipart body is the caller's
                raise ApiError(400, "bad_form", "send multipart/form-data with photo, x and y") from None
            upload = form.get("photo")
            if upload is None or isinstance(upload, str):
                raise ApiError(422, "no_photo", "the form has no photo file (field 'photo')")
            data = await upload.read()
            try:
                x, y = float(form.get("x", "")), float(form.get("y", ""))  # type: ignore[arg-type]
            except ValueError:
                raise ApiError(422, "bad_focus", "x and y must be numbers in [0, 1] (the subject)") from None
            if not (0 <= x <= 1 and 0 <= y <= 1):
                raise ApiError(422, "bad_focus", f"x and y must lie in [0, 1], got ({x}, {y})")
            consent = str(form.get("consent", "")).lower() in ("1", "true", "yes", "on")
            try:
                photo, size = await to_thread.run_sync(lambda: decode_photo(data, cfg.max_side))
            except ValueError as exc:
                raise ApiError(422, "bad_photo", str(exc)) from None
            ext = Path(upload.filename or "photo.png").suffix or ".png"

            def work() -> Any:
                return service.start_battle(
                    get_renderer(),
                    photo,
                    (x, y),
                    client_hash=client,
                    channel="api",
                    photo_sha256=photo_sha256(data),
                    photo_size=size,
                    consent_photo=data if consent else None,
                    photo_ext=ext,
                )

            try:
                battle = await to_thread.run_sync(work)  # rendering: the thread pool, not the database thread
            except ArenaRefused as exc:
                return _refused(exc)
            except ValueError as exc:  # e.g. fewer than two methods available
                raise ApiError(503 if "two available" in str(exc) else 422, "cannot_render", str(exc)) from None
            except Exception as exc:  # a bug: a JSON answer for the client, the traceback in the log
                log.exception("arena: rendering a battle failed")
                raise ApiError(500, "render_failed", f"rendering failed ({type(exc).__name__})") from None
            return json_response(
                {
                    "battle": battle.id,
                    "a": {"src": f"{ARENA_API}/images/{battle.token_a}"},
                    "b": {"src": f"{ARENA_API}/images/{battle.token_b}"},
                    "min_look_ms": int(battle.min_look_s * 1000),
                    "depth_source": battle.depth_source,
                }
            )
        except ApiError as exc:
            return error_response(exc)
        except ArenaRefused as exc:
            return _refused(exc)

    @router.get(ARENA_API + "/images/{token}")
    async def image(token: str) -> Response:
        if len(token) != 32 or not all(c in "0123456789abcdef" for c in token):
            return error_response(ApiError(404, "not_found", "no such image"))
        data = service.image(token)  # memory only: no database, no thread
        if data is None:
            return error_response(ApiError(404, "not_found", "no such image (expired or never made)"))
        return Response(data, media_type="image/png", headers=_IMAGE_HEADERS)

    @router.post(ARENA_API + "/votes")
    async def votes(request: Request) -> Response:
        start = time.perf_counter()
        try:
            key, client = who(request)
            data = await read_json(request, limits.max_body_bytes)
            guards.before_vote(key)
            battle, choice = str(data.get("battle") or ""), str(data.get("choice") or "")
            result = await groups.vote(battle, client, choice)
            if isinstance(result, ArenaRefused):
                guards.after_refusal(key)
                return _refused(result)
            if result.status == "recorded":
                guards.after_vote(key)
            body = {
                "battle": result.battle_id,
                "choice": result.choice,
                "a": result.method_a,
                "b": result.method_b,
                "seconds_shown": result.seconds_shown,
                "status": result.status,
            }
            # time spent in the app (queue for the database included), for load tests and browser dev tools
            return json_response(body, headers={"Server-Timing": f"app;dur={(time.perf_counter() - start) * 1000:.1f}"})
        except ApiError as exc:
            return error_response(exc)
        except ArenaRefused as exc:
            return _refused(exc)

    @router.get(ARENA_API + "/leaderboard")
    async def leaderboard() -> Response:
        start = time.perf_counter()
        board, info = await run(service.leaderboard)
        out = {k: v for k, v in info.items() if k != "used_votes"}
        out["rows"] = board_rows(board)
        out["seconds"] = round(time.perf_counter() - start, 4)
        return json_response(out)

    return router


def mount_arena_routes(app: Any, renderer: Renderer | Callable[[], Renderer], db_url: str | None = None) -> None:
    """Serve the arena API from the web app that ``app.launch()`` builds (a Gradio ``Blocks``), the same way
    :func:`user_study.rater_api.mount_rater_routes` does (through ``launch(app_kwargs=...)``). Idempotent."""
    if getattr(app, "_arena_routes_mounted", False):
        return
    router = build_arena_router(get_arena_service(db_url), renderer)
    original = app.launch

    @functools.wraps(original)
    def launch(*args: Any, **kwargs: Any) -> Any:
        app_kwargs = dict(kwargs.pop("app_kwargs", None) or {})
        app_kwargs["routes"] = [*router.routes, *(app_kwargs.get("routes") or [])]
        return original(*args, app_kwargs=app_kwargs, **kwargs)

    app.launch = launch
    app._arena_routes_mounted = True
