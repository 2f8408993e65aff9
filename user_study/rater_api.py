"""The rater page and its JSON API: plain FastAPI routes served beside the Gradio app (no Gradio queue).

Routes (``API`` = ``/study-api/v1``):

- ``GET /rate?study=<id>&rater=<id>``: the rater page (static HTML + JavaScript, see ``user_study/web/``); also
  ``PROLIFIC_PID``/``STUDY_ID``/``SESSION_ID`` (Prolific), ``workerId``/``assignmentId``/``hitId``/
  ``turkSubmitTo`` (MTurk ExternalQuestion) and ``code`` (invite codes). Old links ``/?study=...`` redirect here.
- ``GET API/studies/<id>``: title, scale, instructions and minimum viewing time of a study.
- ``POST API/begin`` ``{"study", "rater", "source"}``: start or resume the rater's session; returns the view.
- ``GET API/sessions/<session>``: the current item (the same view).
- ``POST API/sessions/<session>/submit`` ``{"position", "score"}``: store a rating; returns the next view.
- ``POST API/sessions/<session>/finish``: completion code and platform hand-off of a completed session.
- ``GET API/images/<token>``: an image of a slot, always PNG with the same headers, by a random-looking token.
- ``POST API/organizer/export`` (form or JSON ``token``, ``study``, ``format``): ratings export, organizer only.

``<session>`` is ``<session id>.<keyed hash>``: only the page that started the session can use it. Every
submit is checked by :class:`~user_study.service.StudyService` (slot, order, minimum viewing time, score).
Abuse limits per client (the peer address, or the ``X-Forwarded-For`` hop set by a trusted proxy): ``begin``
calls and wrong organizer tokens are rate-limited (HTTP 429 with ``Retry-After``), new sessions per client
are capped, and request bodies above a few kilobytes get HTTP 413. The limits are kept per process.

This module holds the routes; :mod:`user_study.rater_http` the JSON answers, request bodies, session tokens and
served images they share; :mod:`user_study.rater_limits` the abuse limits. The routes are served by
:func:`create_rater_app` (``python -m user_study serve``, ``uvicorn --factory``) or, beside a Gradio app, through
:func:`mount_rater_routes` (the Space's Study tab).
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import json
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from anyio import to_thread
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import RedirectResponse, Response

from user_study.config import Settings, StudyConfig
from user_study.rater_http import (
    IMAGE_HEADERS,
    JSON_HEADERS,
    ApiError,
    error_response,
    json_response,
    read_body,
    read_json,
    retry_after,
    served_png,
    session_id,
    session_token,
    shown_id,
)
from user_study.rater_limits import ApiLimits, RateLimiter, WindowCounter, client_key
from user_study.service import (
    RaterView,
    SessionCapReached,
    StudyError,
    StudyService,
    SubmitRejected,
    get_service,
)

__all__ = [
    "API_PREFIX",
    "PAGE_PATH",
    "build_rater_router",
    "completion_url",
    "create_rater_app",
    "is_prolific_url",
    "legacy_link_middleware",
    "mount_rater_routes",
    "prolific_link",
    "rater_link",
]

API_PREFIX = "/study-api/v1"
PAGE_PATH = "/rate"
WEB_DIR = Path(__file__).with_name("web")
MAX_STUDY_ID_CHARS = 64  # the study table's key column
SOURCES = ("link", "prolific", "mturk", "invite", "hf_oauth")
_STATIC = {"rater.js": "text/javascript; charset=utf-8", "rater.css": "text/css; charset=utf-8"}
# No inline script or style, images only from this server; framing stays allowed (MTurk shows the page in an
# iframe) and forms may post to the crowd platform.
_PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' blob: data:; script-src 'self'; style-src 'self'; "
        "form-action 'self' https://www.mturk.com https://workersandbox.mturk.com; base-uri 'none'; "
        "object-src 'none'"
    ),
    "Referrer-Policy": "no-referrer",  # the page URL carries rater ids
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


def _platform_url(url: str) -> str:
    return url if url.startswith(("https://", "http://")) else ""


def is_prolific_url(url: str) -> bool:
    """Whether ``url`` is on Prolific (app.prolific.com, or the older prolific.co), which accepts only the study's
    own completion code."""
    host = (urlsplit(url).hostname or "").lower()
    return any(host == domain or host.endswith("." + domain) for domain in ("prolific.com", "prolific.co"))


def completion_url(cfg: StudyConfig, code: str) -> str:
    """The link a rater is sent to at the end (``{code}`` filled in), or ``""``.

    A per-session code (no fixed ``completion_code``) is never put into a Prolific URL: Prolific checks the
    code against the study's own and would reject the submission, so the rater is shown the code instead.
    """
    url = _platform_url(cfg.completion_url)
    if not url or (not cfg.completion_code and is_prolific_url(url)):
        return ""
    return url.replace("{code}", code)


def build_rater_router(
    service: StudyService,
    *,
    organizer_token: str | None,
    cache_dir: str | Path,
    limits: ApiLimits | None = None,
) -> APIRouter:
    """Routes of the rater page and its JSON API.

    Args:
        service: The shared study service.
        organizer_token: Token of the export route (``None``: export disabled).
        cache_dir: Where PNG copies of served images are kept.
        limits: Abuse limits (default :meth:`ApiLimits.from_env`).
    """
    limits = limits or ApiLimits.from_env()
    cache = Path(cache_dir)
    secret = service.secret
    begin_limiter = RateLimiter(limits.begin_per_min / 60.0, limits.begin_burst)
    token_limiter = RateLimiter(limits.token_tries_per_min / 60.0, limits.token_burst)
    new_sessions = WindowCounter(limits.new_session_window_s)
    page = (WEB_DIR / "rater.html").read_bytes()
    static = {name: (WEB_DIR / name).read_bytes() for name in _STATIC}
    router = APIRouter()

    def view_json(view: RaterView, status: str = "") -> dict[str, Any]:
        cfg = service.study_config(view.study_id)
        out: dict[str, Any] = {
            "study": view.study_id,
            "mode": view.mode,
            "session": session_token(secret, view.assignment_id) if view.assignment_id else "",
            "position": view.position,
            "n": view.n_slots,
            "done": view.done,
            "finished": view.finished,
            "message": view.message,
            "sessions_done": view.sessions_done,
            "min_view_ms": cfg.min_view_ms,
        }
        if status:
            out["status"] = status
        if view.left_image and not view.done:
            # Same keys for every item: nothing tells a check item (hidden reference, gold, trap) from a test
            # item; a trap's instruction is drawn into its image.
            out["left"] = {"src": f"{API_PREFIX}/images/{view.left_image}", "label": view.left_label}
            out["right"] = {"src": f"{API_PREFIX}/images/{view.right_image}", "label": view.right_label}
            out["preload"] = [f"{API_PREFIX}/images/{t}" for t in view.next_images]
        if view.done:
            out["completion_code"] = view.completion_code
            out["completion_url"] = completion_url(cfg, view.completion_code)
        return out

    # SQLite takes one writer at a time: with one database thread, requests queue in order instead of
    # dozens of pool threads contending for the write lock and the GIL (which cost more CPU per submit
    # the more raters were waiting). PostgreSQL serves requests in parallel from the default thread pool.
    db_thread = (
        ThreadPoolExecutor(1, thread_name_prefix="study-db") if service.engine.dialect.name == "sqlite" else None
    )

    def run(fn: Callable[[], Any]) -> Any:
        if db_thread is None:
            return to_thread.run_sync(fn)
        return asyncio.get_running_loop().run_in_executor(db_thread, fn)

    def run_io(fn: Callable[[], Any]) -> Any:
        return to_thread.run_sync(fn)

    def session_of(token: str) -> str:
        aid = session_id(secret, token)
        if aid is None:
            raise ApiError(404, "unknown_session", "unknown session; open your study link again")
        return aid

    @router.get(PAGE_PATH, include_in_schema=False)
    async def rater_page() -> Response:
        return Response(page, media_type="text/html; charset=utf-8", headers=_PAGE_HEADERS)

    @router.get(PAGE_PATH + "/static/{name}", include_in_schema=False)
    async def rater_static(name: str) -> Response:
        if name not in static:
            return error_response(ApiError(404, "not_found", "no such file"))
        return Response(static[name], media_type=_STATIC[name], headers={"Cache-Control": "no-cache"})

    @router.get(API_PREFIX + "/studies/{study_id}")
    async def study_info(study_id: str) -> Response:
        try:
            cfg = await run(lambda: service.study_config(study_id))
        except StudyError:
            # no list of known studies here (the service's message has one): this route is public
            return error_response(
                ApiError(404, "unknown_study", f"unknown study {shown_id(study_id)}; check your link")
            )
        return json_response(
            {
                "study": study_id,
                "title": cfg.title,
                "mode": cfg.mode,
                "scale": {str(k): v for k, v in cfg.scale_labels.items()},
                "min_view_ms": cfg.min_view_ms,
                "instructions": cfg.instructions_md,
                "items_per_session": cfg.items_per_session,
            }
        )

    @router.post(API_PREFIX + "/begin")
    async def begin(request: Request) -> Response:
        try:
            data = await read_json(request, limits.max_body_bytes)
            client = client_key(request, limits.trusted_proxy_hops)
            wait = begin_limiter.take(client)
            if wait > 0:
                raise ApiError(
                    429, "rate_limited", "too many starts from your network; wait a moment", retry_after(wait)
                )
            study, rater = str(data.get("study") or "").strip(), str(data.get("rater") or "")
            source = str(data.get("source") or "link")
            if source not in SOURCES:
                raise ApiError(422, "bad_source", f"source {source!r} is not one of {list(SOURCES)}")
            if not study:
                raise ApiError(422, "no_study", "the link has no study id (?study=...)")
            if len(study) > MAX_STUDY_ID_CHARS:  # no stored study has a longer id: refuse before any query
                raise ApiError(404, "unknown_study", f"unknown study {shown_id(study)}; check your link")
            allow_new = new_sessions.count(client) < limits.max_new_sessions
            try:
                view = await run(lambda: service.begin(study, rater, source, allow_new=allow_new))
            except SessionCapReached as exc:
                raise ApiError(
                    429, "too_many_sessions", str(exc), retry_after(limits.new_session_window_s / 4)
                ) from None
            except StudyError as exc:
                msg = str(exc)
                if msg.startswith("unknown study"):
                    msg = f"unknown study {shown_id(study)}; check your link"
                raise ApiError(404 if "unknown study" in msg else 422, "refused", msg) from None
            if view.started:
                new_sessions.add(client)
            return json_response(await run(lambda: view_json(view)))
        except ApiError as exc:
            return error_response(exc)

    @router.get(API_PREFIX + "/sessions/{token}")
    async def current(token: str) -> Response:
        try:
            aid = session_of(token)
            view = await run(lambda: service.session_view(aid))
            return json_response(await run(lambda: view_json(view)))
        except ApiError as exc:
            return error_response(exc)
        except StudyError as exc:
            return error_response(ApiError(404, "unknown_session", str(exc)))

    @router.post(API_PREFIX + "/sessions/{token}/submit")
    async def submit(token: str, request: Request) -> Response:
        try:
            aid = session_of(token)
            data = await read_json(request, limits.max_body_bytes)
            position = data.get("position")
            if not isinstance(position, int) or isinstance(position, bool):
                raise ApiError(422, "bad_slot", "position must be an integer")
            score = data.get("score")
            if score is None or score == "":
                raise ApiError(422, "no_score", "choose a score first")

            def work() -> dict[str, Any]:
                result = service.submit(None, f"{aid}:{position}", score)
                return view_json(result.view, result.status)

            return json_response(await run(work))
        except ApiError as exc:
            return error_response(exc)
        except SubmitRejected as exc:
            body: dict[str, Any] = {"error": exc.code, "message": str(exc)}
            headers = {}
            if exc.retry_after_s is not None:
                body["retry_after_ms"] = int(exc.retry_after_s * 1000)
                headers = retry_after(exc.retry_after_s)
            return json_response(
                body, 409 if exc.code in ("too_fast", "out_of_order", "expired", "not_shown") else 422, headers
            )

    @router.post(API_PREFIX + "/sessions/{token}/finish")
    async def finish(token: str, request: Request) -> Response:
        try:
            aid = session_of(token)
            await read_body(request, limits.max_body_bytes)
            view = await run(lambda: service.session_view(aid))
            if not view.done:
                left = max(0, view.n_slots - view.position)
                raise ApiError(409, "not_done", f"the session is not complete: {left} item(s) left")
            return json_response(await run(lambda: view_json(view)))
        except ApiError as exc:
            return error_response(exc)
        except StudyError as exc:
            return error_response(ApiError(404, "unknown_session", str(exc)))

    @router.get(API_PREFIX + "/images/{token}")
    async def image(token: str) -> Response:
        if len(token) != 32 or not all(c in "0123456789abcdef" for c in token):
            return error_response(ApiError(404, "not_found", "no such image"))
        path = await run(lambda: service.image_path(token))
        if path is None:
            return error_response(ApiError(404, "not_found", "no such image"))
        data = await run_io(lambda: served_png(cache, path, variant=token))  # its own bytes per slot side
        return Response(data, media_type="image/png", headers=IMAGE_HEADERS)

    @router.post(API_PREFIX + "/organizer/export")
    async def organizer_export(request: Request) -> Response:
        try:
            if not organizer_token:
                raise ApiError(403, "disabled", "the organizer view is disabled: set BOKEH_ORGANIZER_TOKEN")
            body = await read_body(request, limits.max_body_bytes)
            if request.headers.get("content-type", "").startswith("application/json"):
                try:
                    data = json.loads(body or b"{}")
                except ValueError:
                    raise ApiError(400, "bad_json", "the request body is not JSON") from None
            else:
                from urllib.parse import parse_qsl

                data = dict(parse_qsl(body.decode("utf-8", "replace")))
            client = client_key(request, limits.trusted_proxy_hops)
            given = str(data.get("token") or "")
            if not hmac.compare_digest(given.encode(), organizer_token.encode()):
                wait = token_limiter.take(client)
                if wait > 0:
                    raise ApiError(429, "rate_limited", "too many wrong tokens; wait", retry_after(wait))
                raise ApiError(401, "wrong_token", "wrong organizer token")
            study = str(data.get("study") or "").strip()
            fmt = str(data.get("format") or "csv")
            if fmt not in ("csv", "jsonl"):
                raise ApiError(422, "bad_format", f"format {fmt!r} is not csv or jsonl")

            def work() -> bytes:
                from user_study.report import export_ratings

                # written to a private temp folder that is removed before the response is sent
                with tempfile.TemporaryDirectory(prefix="study_export_") as tmp:
                    out = export_ratings(
                        service, study, Path(tmp) / f"ratings.{fmt}", fmt="csv" if fmt == "csv" else "json"
                    )
                    return out.read_bytes()

            try:
                data_out = await run(work)
            except StudyError as exc:
                raise ApiError(404, "unknown_study", str(exc)) from None
            safe = "".join(c for c in study if c.isalnum() or c in "-_") or "study"
            media = "text/csv; charset=utf-8" if fmt == "csv" else "application/x-ndjson"
            return Response(
                data_out,
                media_type=media,
                headers={**JSON_HEADERS, "Content-Disposition": f'attachment; filename="ratings_{safe}.{fmt}"'},
            )
        except ApiError as exc:
            return error_response(exc)

    return router


def legacy_link_middleware(app: Any) -> Callable:
    """ASGI middleware: ``GET /?study=...`` (rater links of the Gradio form) answers 307 to the rater page."""

    async def middleware(scope: dict, receive: Callable, send: Callable) -> None:
        if scope.get("type") == "http" and scope.get("method") in ("GET", "HEAD") and scope.get("path") == "/":
            from urllib.parse import parse_qsl

            query = scope.get("query_string", b"").decode("latin-1")
            params = parse_qsl(query, keep_blank_values=True)
            if any(k == "study" for k, _ in params):
                response = RedirectResponse(f"{PAGE_PATH}?{urlencode(params)}", status_code=307)
                await response(scope, receive, send)
                return
        await app(scope, receive, send)

    return middleware


def rater_link(study_id: str, **params: str) -> str:
    """Relative URL of the rater page for a study (extra query parameters, e.g. ``rater=...``, appended)."""
    return f"{PAGE_PATH}?{urlencode({'study': study_id, **params})}"


def prolific_link(study_id: str) -> str:
    """Relative URL of the rater page to paste into a Prolific study: Prolific replaces its three placeholders
    (``{{%PROLIFIC_PID%}}``, ``{{%STUDY_ID%}}``, ``{{%SESSION_ID%}}``) with the participant's values."""
    placeholders = "&".join(f"{name}={{{{%{name}%}}}}" for name in ("PROLIFIC_PID", "STUDY_ID", "SESSION_ID"))
    return f"{rater_link(study_id)}&{placeholders}"


def create_rater_app(db_url: str | None = None, organizer_token: str | None = None) -> FastAPI:
    """A FastAPI app with only the rater page and API (``python -m user_study serve``; ``uvicorn --factory``
    with several workers).

    Settings come from the environment as for the Space (``BOKEH_STUDY_DB``, ``BOKEH_DATA_DIR``, ...).
    """
    from starlette.middleware import Middleware

    settings = Settings.from_env(db_url, organizer_token)
    svc = get_service(settings.db_url)
    app = FastAPI(
        title="Bokeh user study: rater API",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        middleware=[Middleware(legacy_link_middleware)],
    )
    app.include_router(
        build_rater_router(svc, organizer_token=settings.organizer_token, cache_dir=settings.data_dir / "served")
    )
    from user_study.arena.api import build_arena_router
    from user_study.arena.render import BasicRenderer
    from user_study.arena.service import get_arena_service

    # the arena API beside the rater API (the Space mounts it with its own renderer, space/arena_tab.py)
    app.include_router(build_arena_router(get_arena_service(settings.db_url), BasicRenderer()))
    return app


def mount_rater_routes(app: Any, db_url: str | None = None, organizer_token: str | None = None) -> None:
    """Serve the rater page and API from the web app that ``app.launch()`` builds (a Gradio ``Blocks``).

    Gradio builds its FastAPI app inside ``launch``; the routes and the legacy-link redirect are handed to it
    through ``launch(app_kwargs=...)`` (FastAPI's ``routes`` and ``middleware`` arguments), so they are in
    place before the server accepts its first request. Calling it again on the same app does nothing. When
    mounting Blocks on your own FastAPI app instead (``gr.mount_gradio_app``), include
    :func:`build_rater_router` in that app yourself. Nothing here imports Gradio: ``app`` only needs a
    ``launch`` method that accepts ``app_kwargs``.
    """
    if getattr(app, "_rater_routes_mounted", False):
        return
    from starlette.middleware import Middleware

    settings = Settings.from_env(db_url, organizer_token)
    router = build_rater_router(
        get_service(settings.db_url), organizer_token=settings.organizer_token, cache_dir=settings.data_dir / "served"
    )
    original = app.launch

    @functools.wraps(original)
    def launch(*args: Any, **kwargs: Any) -> Any:
        app_kwargs = dict(kwargs.pop("app_kwargs", None) or {})
        app_kwargs["routes"] = [*router.routes, *(app_kwargs.get("routes") or [])]
        app_kwargs["middleware"] = [Middleware(legacy_link_middleware), *(app_kwargs.get("middleware") or [])]
        return original(*args, app_kwargs=app_kwargs, **kwargs)

    app.launch = launch
    app._rater_routes_mounted = True
