"""RFC 7807 problem documents, and the middleware that turns the error tree into them."""

from __future__ import annotations

import json
import uuid

import structlog
from aiohttp import web

from geoflux.errors import ConfigurationError, NotFound, PermanentError, TransientError, ValidationError

log = structlog.get_logger("geoflux.api")


class HTTPProblem(Exception):
    def __init__(self, status: int, title: str, detail: str, type_: str = "about:blank") -> None:
        super().__init__(detail)
        self.status, self.title, self.detail, self.type = status, title, detail, type_


def problem(status: int, title: str, detail: str, type_: str = "about:blank", **extra) -> web.Response:
    body = {"type": type_, "title": title, "status": status, "detail": detail, **extra}
    return web.Response(status=status, text=json.dumps(body), content_type="application/problem+json")


@web.middleware
async def problem_middleware(request: web.Request, handler):
    try:
        return await handler(request)
    except HTTPProblem as exc:
        return problem(exc.status, exc.title, exc.detail, exc.type)
    except NotFound as exc:
        return problem(404, "Not Found", str(exc))
    except ValidationError as exc:
        return problem(422, "Unprocessable Entity", str(exc))
    except TransientError as exc:
        return problem(503, "Service Unavailable", str(exc))
    except (PermanentError, ConfigurationError) as exc:
        return problem(400, "Bad Request", str(exc))
    except web.HTTPException as exc:
        if exc.status >= 400:
            return problem(exc.status, exc.reason, exc.text or exc.reason)
        raise
    except Exception as exc:
        incident = uuid.uuid4().hex[:12]
        # the JSON log line carries the error itself, so an incident can be found from it alone
        log.exception("unhandled error", incident=incident, path=request.path,
                      error=f"{type(exc).__name__}: {exc}"[:500])
        return problem(500, "Internal Server Error", f"unexpected error; incident {incident}")


async def json_body(request: web.Request) -> object:
    if not request.body_exists:
        raise HTTPProblem(400, "Bad Request", "a JSON body is required")
    try:
        return json.loads(await request.read())  # bytes: json detects UTF-8/16/32 itself
    except UnicodeDecodeError:
        raise HTTPProblem(400, "Bad Request", "body is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise HTTPProblem(400, "Bad Request", f"body is not valid JSON: {exc}") from None


def page(request: web.Request, default_limit: int = 100, max_limit: int = 1000) -> tuple[int, int]:
    """`?offset=&limit=` of a list endpoint, or a 400 with the reason."""
    try:
        offset = int(request.query.get("offset", 0))
        limit = int(request.query.get("limit", default_limit))
    except ValueError:
        raise HTTPProblem(400, "Bad Request", "offset and limit must be integers") from None
    if offset < 0 or not 1 <= limit <= max_limit:
        raise HTTPProblem(400, "Bad Request", f"offset >= 0 and 1 <= limit <= {max_limit}")
    return offset, limit
