"""The operators' web dashboard on the server's HTTP side: apps, functions, calls, live logs, containers,
image builds, storage and usage, behind a sign-in with a client token or a one-time link."""

from berth.http.dashboard.routes import add_dashboard_routes, add_page_not_found

__all__ = ["add_dashboard_routes", "add_page_not_found"]
