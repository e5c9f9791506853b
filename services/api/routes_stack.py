"""GET /api/v1/stack (operators): the parts of the `geoflux up` this API was started by — each
with its state (running, restarting, given-up, down), pid, restarts and last error — read from
the status file `up` keeps (GEOFLUX_STACK_STATUS_FILE, which `up` sets for the API it starts).
An API not started by `up` answers 404: its parts are whatever runs them (Kubernetes, systemd).
"""

from __future__ import annotations

import json
import time

from aiohttp import web

from geoflux.settings import StackSettings
from services.api.auth import require_operator
from services.api.problems import HTTPProblem


async def stack_status(request: web.Request) -> web.Response:
    require_operator(request, "the stack's status")
    path = StackSettings().status_file
    if path is None:
        raise HTTPProblem(404, "Not Found", "this API was not started by `geoflux up`: no stack status")
    try:
        status = json.loads(path.read_text())
    except (OSError, ValueError):
        raise HTTPProblem(404, "Not Found", f"no stack status at {path}: is `geoflux up` running?") from None
    # `up` rewrites the file every few seconds: an old one means `up` itself is gone
    age_s = time.time() - status["updated_ms"] / 1000
    return web.json_response({**status, "age_s": round(age_s, 1),
                              "stale": age_s > 3 * status.get("heartbeat_s", 5)})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/stack", stack_status)
