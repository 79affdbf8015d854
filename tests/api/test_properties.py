"""Property tests: any JSON body gets a 2xx or a 4xx with a detail (never a 5xx), and SSE framing holds."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from locallab.api.sse import DONE, encode_event
from tests.conftest import AppFactory, sse_events

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
FIELDS = [
    "prompt",
    "messages",
    "model_id",
    "stream",
    "max_length",
    "temperature",
    "top_p",
    "top_k",
    "stop",
    "seed",
    "format",
]
BODIES = st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), JSON, max_size=6)


@given(event=st.dictionaries(st.text(), JSON, max_size=5))
def test_sse_frames_round_trip(event: dict[str, Any]) -> None:
    frame = encode_event(event)
    assert frame.startswith(b"data: ") and frame.endswith(b"\n\n")
    assert frame.count(b"\n\n") == 1  # a newline inside the text can never end the frame early
    assert sse_events(frame.decode() + DONE.decode()) == [json.loads(frame[6:]), "[DONE]"]


def test_any_body_gets_an_answer_never_a_server_error(make_client: AppFactory) -> None:
    client = make_client()  # one app for every example

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(path=st.sampled_from(["/generate", "/chat", "/generate/batch", "/models/load"]), body=BODIES)
    def check(path: str, body: dict[str, Any]) -> None:
        r = client.post(path, json=body)
        assert r.status_code < 500, r.text
        if r.status_code >= 400:
            assert isinstance(r.json()["detail"], str) and r.json()["detail"]

    check()
