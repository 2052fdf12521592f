"""A tiny ASGI application for ferrogate's integration tests, served by uvicorn (whose default
h11 parser logs "Invalid HTTP request received." for a request it cannot frame). POST answers
with the length of the body it read; anything else answers 200 "ok"."""


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    length = 0
    more = True
    while more:
        message = await receive()
        length += len(message.get("body", b""))
        more = message.get("more_body", False)
    if scope["method"] == "POST":
        body = str(length).encode()
    else:
        body = b"ok"
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"text/plain"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
