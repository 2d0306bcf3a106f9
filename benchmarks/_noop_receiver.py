"""``python -m pipelines.webhooks ARGS`` whose app also serves ``POST /webhooks/noop``.

    python benchmarks/_noop_receiver.py [--inbox PATH] serve --port PORT

The no-op endpoint reads the body and answers 200, verifying and storing
nothing: receiver_benchmark.py's baseline on the same server. It is added
here, not in the receiver, so production never serves it; everything else
(config, inbox, uvicorn settings, gc.freeze) is the production ``serve``.
"""

from __future__ import annotations

import sys

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from makini_sync.webhooks import receiver
from pipelines import webhooks

NOOP_PATH = "/webhooks/noop"


async def noop(request: Request) -> Response:
    await request.body()
    return JSONResponse({"status": "noop"})


def create_app_with_noop(*args, create_app=receiver.create_app, **kwargs):
    app = create_app(*args, **kwargs)
    app.add_route(NOOP_PATH, noop, methods=["POST"])
    return app


if __name__ == "__main__":
    # pipelines.webhooks.serve looks create_app up on the receiver module when it runs
    receiver.create_app = create_app_with_noop
    sys.exit(webhooks.main())
