"""The dashboard's routes: each page handler resolves the viewer's environment or object, reads through
views.py and renders one template."""

from __future__ import annotations

from aiohttp import web

from berth.api.context import Services
from berth.errors import InvalidArgument, NotFound
from berth.http.dashboard import logs, usage, views
from berth.http.dashboard.render import STATIC, error_page, page
from berth.http.dashboard.session import COOKIE, add_session_routes, redirect, signed_in
from berth.services.dashboard_access import DashboardAccess, Viewer

_STATIC_TYPES = {".css": "text/css", ".js": "text/javascript"}


class DashboardPages:
    def __init__(self, s: Services, access: DashboardAccess) -> None:
        self.s = s
        self.access = access

    async def root(self, request: web.Request, viewer: Viewer) -> web.StreamResponse:
        return redirect("/apps")

    async def apps(self, request: web.Request, viewer: Viewer) -> web.StreamResponse:
        env = await views.environment(self.s, viewer, request.query.get("env", ""))
        envs = [viewer.scope] if viewer.scope else await self.s.accounts.names()
        rows = await views.apps_overview(self.s, env)
        return page("apps.html", title="Apps", viewer=viewer, env=env, envs=envs, rows=rows)

    async def app_page(self, request: web.Request, viewer: Viewer) -> web.StreamResponse:
        app_rec = await views.visible_app(self.s, viewer, request.match_info["app_id"])
        ctx = await views.app_detail(self.s, app_rec)
        return page("app.html", title=app_rec.name or app_rec.app_id, viewer=viewer, env=app_rec.environment, **ctx)

    async def rollback(self, request: web.Request, viewer: Viewer) -> web.StreamResponse:
        app_rec = await views.visible_app(self.s, viewer, request.match_info["app_id"])
        form = await request.post()
        version = str(form.get("version", ""))
        if not version.lstrip("-").isdigit():
            raise InvalidArgument(f"Not a deployment version: '{version}'")
        await self.s.deployments.rollback(app_rec.app_id, int(version))  # as `modal app rollback`
        return redirect(f"/apps/{app_rec.app_id}")

    async def function_page(self, request: web.Request, viewer: Viewer) -> web.StreamResponse:
        function_id = request.match_info["function_id"]
        app_rec = await views.visible_function(self.s, viewer, function_id)
        ctx = await views.function_detail(self.s, app_rec, function_id)
        return page("function.html", title=ctx["tag"], viewer=viewer, env=app_rec.environment, **ctx)

    async def call_page(self, request: web.Request, viewer: Viewer) -> web.StreamResponse:
        call_id = request.match_info["call_id"]
        app_rec, function_id = await views.visible_call(self.s, viewer, call_id)
        ctx = await views.call_detail(self.s, app_rec, function_id, call_id)
        return page("call.html", title=call_id, viewer=viewer, env=app_rec.environment, **ctx)

    async def logs_page(self, request: web.Request, viewer: Viewer) -> web.StreamResponse:
        app_rec = await views.visible_app(self.s, viewer, request.match_info["app_id"])
        flt = logs.LogFilter.of(request)
        lines = await logs.history(self.s, app_rec.app_id, flt)
        since = max((float(str(line["t"])) for line in lines), default=0.0)
        functions = await views.app_functions(self.s, app_rec.app_id)
        title = f"Logs of {app_rec.name or app_rec.description or app_rec.app_id}"
        return page(
            "logs.html", title=title, viewer=viewer, env=app_rec.environment, app=app_rec, lines=lines,
            since=since, flt=flt, functions=functions, query=request.query_string,
        )  # fmt: skip

    async def logs_stream(self, request: web.Request, viewer: Viewer) -> web.StreamResponse:
        app_rec = await views.visible_app(self.s, viewer, request.match_info["app_id"])
        since = request.headers.get("Last-Event-ID") or request.query.get("since", "0")
        try:
            after = float(since)
        except ValueError as exc:
            raise InvalidArgument(f"Not a timestamp: '{since}'") from exc
        return await logs.stream(request, self.s, self.access, request.cookies.get(COOKIE, ""), app_rec.app_id, after)

    async def containers(self, request: web.Request, viewer: Viewer) -> web.StreamResponse:
        env = await views.environment(self.s, viewer, request.query.get("env", ""))
        listed = await self.s.deployments.list_apps(env, lambda app_id: 0)
        records = [await self.s.apps.get(a.app_id) for a in listed.apps]
        rows = await views.containers(self.s, records, self.s.clock.now())
        return page("containers.html", title="Containers", viewer=viewer, env=env, rows=rows)

    async def images(self, request: web.Request, viewer: Viewer) -> web.StreamResponse:
        builds = await views.image_builds(self.s, viewer)
        return page("images.html", title="Image builds", viewer=viewer, env="", builds=builds)

    async def image_page(self, request: web.Request, viewer: Viewer) -> web.StreamResponse:
        image_id = request.match_info["image_id"]
        found = [b for b in await views.image_builds(self.s, viewer) if b.image_id == image_id]
        if not found:
            raise NotFound(f"Image build {image_id} not found (build logs are kept until the server restarts)")
        return page("image.html", title=image_id, viewer=viewer, env="", build=found[0])

    async def storage(self, request: web.Request, viewer: Viewer) -> web.StreamResponse:
        env = await views.environment(self.s, viewer, request.query.get("env", ""))
        return page("storage.html", title="Storage", viewer=viewer, env=env, **await views.storage(self.s, env))

    async def usage_page(self, request: web.Request, viewer: Viewer) -> web.StreamResponse:
        env = await views.environment(self.s, viewer, request.query.get("env", ""))
        hours = request.query.get("hours", "24")
        listed = await self.s.deployments.list_apps(env, lambda app_id: 0)
        found = await usage.usage(self.s, [a.app_id for a in listed.apps], int(hours) if hours.isdigit() else 24)
        return page("usage.html", title="Usage", viewer=viewer, env=env, usage=found, windows=usage.WINDOWS_H)

    async def static(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        path = STATIC / name
        if "/" in name or path.suffix not in _STATIC_TYPES or not path.is_file():
            return web.Response(status=404, text="not found")
        return web.Response(body=path.read_bytes(), content_type=_STATIC_TYPES[path.suffix])

    async def token_flow(self, request: web.Request, viewer: Viewer) -> web.StreamResponse:
        """`modal token new`'s page: shows the code the CLI shows, and approves on POST."""
        flow_id = request.match_info["flow_id"]
        if request.method == "POST":
            await self.s.token_flows.approve(flow_id, viewer.token_id, viewer.scope)
            return page("token_flow.html", title="New token", viewer=viewer, env="", flow_id=flow_id, approved=True)
        flow = self.s.token_flows.get(flow_id)
        approved = flow.token is not None
        return page(
            "token_flow.html",
            title="New token",
            viewer=viewer,
            env="",
            flow_id=flow_id,
            code=flow.code,
            approved=approved,
        )

    def add_routes(self, app: web.Application) -> None:
        for path, handler in (
            ("/", self.root),
            ("/apps", self.apps),
            ("/apps/{app_id}", self.app_page),
            ("/apps/{app_id}/logs", self.logs_page),
            ("/apps/{app_id}/logs/stream", self.logs_stream),
            ("/functions/{function_id}", self.function_page),
            ("/calls/{call_id}", self.call_page),
            ("/containers", self.containers),
            ("/images", self.images),
            ("/images/{image_id}", self.image_page),
            ("/storage", self.storage),
            ("/usage", self.usage_page),
        ):
            app.router.add_get(path, signed_in(handler))
        app.router.add_post("/apps/{app_id}/rollback", signed_in(self.rollback))
        app.router.add_get("/token-flow/{flow_id}", signed_in(self.token_flow))
        app.router.add_post("/token-flow/{flow_id}/approve", signed_in(self.token_flow))
        app.router.add_get("/static/dashboard/{name}", self.static)


def add_dashboard_routes(app: web.Application, s: Services, access: DashboardAccess) -> None:
    add_session_routes(app, access)
    DashboardPages(s, access).add_routes(app)


def add_page_not_found(app: web.Application) -> None:
    """An HTML 404 page for any other GET path: registered last, after every other route of the HTTP side."""

    async def not_found(request: web.Request) -> web.StreamResponse:
        return error_page(404, "Not found", "There is no such page.")

    app.router.add_get("/{tail:.*}", not_found)
