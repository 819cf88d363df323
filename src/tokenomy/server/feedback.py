"""``POST /v1/feedback``: a client scores an answer it got.

Body ``{"request_id": "req_...", "score": 0..1, "comment": "..."}``, with the
client's own key (or the master key, for any request). A key may score only requests of its own organisation (or,
for a key without one, its own requests); anything else is a 404, so request
ids of others are not even confirmed to exist. Errors are in OpenAI's format.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from ..errors import NotFound
from ..gateway import Gateway
from ..keys import MASTER_KEY_ID, bearer_token
from ..routing.feedback import Feedback, FeedbackStore, parse_feedback
from .http import Scope, header_dict, parse_json, read_body, send_json


async def handle_feedback(gw: Gateway, scope: Scope, receive: Any, send: Any) -> None:
    key = await gw.keys.authenticate(bearer_token(header_dict(scope)))
    body = parse_json(await read_body(receive))
    request_id, score, comment = parse_feedback(body)
    rec = await asyncio.to_thread(gw.store.get_record, request_id)
    own = rec is not None and (
        key.key_id in (MASTER_KEY_ID, rec.key_id) or (key.org is not None and rec.org == key.org)
    )
    if rec is None or not own:
        raise NotFound(f"No request {request_id!r} for this key.", code="request_not_found")
    fb = Feedback(
        request_id=request_id,
        score=score,
        source="user",
        comment=comment,
        key_id=key.key_id,
        org=key.org,
        model=rec.served_model,
        ts=time.time(),
    )
    await asyncio.to_thread(FeedbackStore(gw.store).add, fb)
    await send_json(
        send,
        200,
        {"object": "feedback", "request_id": request_id, "score": score, "source": "user"},
    )
