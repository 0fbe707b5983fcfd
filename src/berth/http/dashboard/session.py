"""Sign-in for the dashboard: the login form (a client token), one-time links, sign-out, and `signed_in`,
which every page handler passes through. It checks the session, and with it the token, on every request."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from urllib.parse import quote, urlsplit

from aiohttp import web

from berth.errors import BerthError, InvalidArgument, NotFound, PermissionDenied
from berth.http.dashboard.render import error_page, page
from berth.services.dashboard_access import SESSION_TTL_S, DashboardAccess, Viewer

log = logging.getLogger("berth.dashboard")

COOKIE = "berth_dashboard"
VIEWER_KEY = web.AppKey("dashboard_access", DashboardAccess)

Handler = Callable[[web.Request, Viewer], Awaitable[web.StreamResponse]]


def _access(request: web.Request) -> DashboardAccess:
    return request.app[VIEWER_KEY]


def _safe_next(target: str) -> str:
    """Only a path of this site: never another origin (an open redirect)."""
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return "/apps"
    return target


def _same_origin(request: web.Request) -> bool:
    origin = request.headers.get("Origin")
    return origin is None or urlsplit(origin).netloc == request.host


def redirect(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def _with_session(response: web.StreamResponse, session: str) -> web.StreamResponse:
    response.set_cookie(COOKIE, session, max_age=int(SESSION_TTL_S), path="/", httponly=True, samesite="Strict")
    return response


def signed_in(handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Sends a request without a live session to the login page, and maps typed errors to error pages (an
    unknown id is a 404 page, never a traceback)."""

    async def guarded(request: web.Request) -> web.StreamResponse:
        viewer = await _access(request).viewer(request.cookies.get(COOKIE, ""))
        if viewer is None:
            if request.method != "GET" or request.path.endswith("/stream"):
                return error_page(401, "Signed out", "Sign in to see the dashboard.")
            return redirect(f"/login?next={quote(request.path_qs, safe='')}")
        if request.method != "GET" and not _same_origin(request):
            return error_page(403, "Refused", "A change must come from the dashboard's own pages.", viewer)
        try:
            return await handler(request, viewer)
        except NotFound as exc:
            return error_page(404, "Not found", exc.message, viewer)
        except (InvalidArgument, PermissionDenied) as exc:
            return error_page(400, "Bad request", exc.message, viewer)
        except BerthError as exc:
            return error_page(500, "Error", exc.message, viewer)
        except Exception:
            request_id = secrets.token_hex(6)
            log.exception("dashboard request %s (%s) failed", request_id, request.path)
            return error_page(500, "Internal error", f"The page failed (request id {request_id}).", viewer)

    return guarded


async def login_form(request: web.Request) -> web.StreamResponse:
    nxt = _safe_next(request.query.get("next", "/apps"))
    return page("login.html", title="Sign in", viewer=None, env="", next=nxt, message="")


async def login(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    nxt = _safe_next(str(form.get("next", "/apps")))
    session = await _access(request).sign_in(str(form.get("token_id", "")), str(form.get("token_secret", "")))
    if session is None:
        message = "That token is not valid: it is unknown, revoked or has the wrong secret."
        return page("login.html", status=401, title="Sign in", viewer=None, env="", next=nxt, message=message)
    return _with_session(redirect(nxt), session)


async def redeem_link(request: web.Request) -> web.StreamResponse:
    session = await _access(request).redeem(request.query.get("code", ""))
    if session is None:
        return error_page(403, "Link not valid", "This sign-in link was already used, has expired or is unknown.")
    return _with_session(redirect("/apps"), session)


async def logout(request: web.Request) -> web.StreamResponse:
    if not _same_origin(request):
        return error_page(403, "Refused", "Sign out from the dashboard's own pages.")
    await _access(request).sign_out(request.cookies.get(COOKIE, ""))
    response = redirect("/login")
    response.del_cookie(COOKIE, path="/")
    return response


def add_session_routes(app: web.Application, access: DashboardAccess) -> None:
    app[VIEWER_KEY] = access
    app.router.add_get("/login", login_form)
    app.router.add_post("/login", login)
    app.router.add_get("/login/link", redeem_link)
    app.router.add_post("/logout", logout)
