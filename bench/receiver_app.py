"""The smallest webhook receiver (for benchmarks): answers every POST with 200 and a body
every platform reads as success ({"code": 0, "errcode": 0}), and counts what it got:
GET /stats returns {"requests": n, "bytes": n, "paths": n distinct paths}.
"""

import json

STATS = {"requests": 0, "bytes": 0}
PATHS: set[str] = set()
OK = json.dumps({"code": 0, "errcode": 0, "msg": "ok"}).encode()


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    size, more = 0, True
    while more:
        message = await receive()
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
    if scope["method"] == "GET" and scope["path"] == "/stats":
        body = json.dumps({**STATS, "paths": len(PATHS)}).encode()
    else:
        STATS["requests"] += 1
        STATS["bytes"] += size
        PATHS.add(scope["path"])
        body = OK
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})
