"""Drives Hermes with the official `openai` package, as an unmodified client would.

Usage: python sdk_scenarios.py BASE_URL CLIENT_KEY
Prints one `ok <scenario>` line per passed scenario; any failed assertion exits non-zero.
The Rust test (tests/gateway.rs) sets up the backends these scenarios expect.
"""
import sys

import openai
from openai import OpenAI

base_url, key = sys.argv[1], sys.argv[2]
# max_retries=0: what is tested is Hermes's failover, not the SDK's own retries.
client = OpenAI(base_url=base_url + "/v1", api_key=key, max_retries=0, timeout=30)


def ok(name):
    print("ok", name, flush=True)


# models list: every configured model plus auto
ids = {m.id for m in client.models.list()}
assert {"auto", "gpt-4o-mini", "beta-model", "shared-model"} <= ids, ids
ok("models")

# plain chat, with fields Hermes does not know about
raw = client.chat.completions.with_raw_response.create(
    model="gpt-4o-mini",
    messages=[
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Say hello"},
        {"role": "assistant", "content": "Hello?"},
        {"role": "user", "content": "Again"},
    ],
    seed=7,
    tools=[{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}}}],
    response_format={"type": "text"},
    extra_body={"hermes_test_marker": "kept"},
)
chat = raw.parse()
assert chat.choices[0].message.content == "Hello from alpha", chat
assert chat.usage.total_tokens == 15, chat.usage
assert raw.headers["x-hermes-backend"] == "alpha", dict(raw.headers)
assert raw.headers["x-hermes-attempts"] == "1"
assert raw.headers["x-hermes-request-id"].startswith("req_")
assert raw.headers["x-mock-upstream"] == "alpha", "upstream headers reach the client"
ok("chat")

# streamed chat with usage
stream = client.chat.completions.create(
    model="gpt-4o-mini",
    messages=[{"role": "user", "content": "stream please"}],
    stream=True,
    stream_options={"include_usage": True},
)
text, usage, chunks = "", None, 0
for c in stream:
    chunks += 1
    if c.choices:
        text += c.choices[0].delta.content or ""
    if c.usage:
        usage = c.usage
assert text == "Hello from alpha", text
assert usage is not None and usage.prompt_tokens == 12 and usage.completion_tokens == 3, usage
assert chunks == 6, chunks
ok("stream")

# model=auto goes to the primary backend
raw = client.chat.completions.with_raw_response.create(model="auto", messages=[{"role": "user", "content": "hi"}])
assert raw.headers["x-hermes-backend"] == "alpha", dict(raw.headers)
assert raw.parse().choices[0].message.content == "Hello from alpha"
ok("auto")

# a 500 from the first backend is answered by the second
raw = client.chat.completions.with_raw_response.create(model="shared-model", messages=[{"role": "user", "content": "hi"}])
assert raw.headers["x-hermes-backend"] == "beta", dict(raw.headers)
assert raw.headers["x-hermes-attempts"] == "2", dict(raw.headers)
assert raw.parse().choices[0].message.content == "Hello from beta"
ok("failover")

# the same for a stream
stream = client.chat.completions.create(model="shared-model", messages=[{"role": "user", "content": "hi"}], stream=True)
assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "Hello from beta"
ok("stream_failover")

# embeddings
emb = client.embeddings.create(model="gpt-4o-mini", input="hello")
assert emb.data[0].embedding == [0.25, -0.5, 0.125], emb
ok("embeddings")

# wrong key
bad = OpenAI(base_url=base_url + "/v1", api_key="not-a-key", max_retries=0)
try:
    bad.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    raise AssertionError("wrong key accepted")
except openai.AuthenticationError as e:
    assert e.status_code == 401
    assert e.body["code"] == "invalid_api_key", e.body
ok("wrong_key")

# unknown model
try:
    client.chat.completions.create(model="gpt-9-ultra", messages=[{"role": "user", "content": "hi"}])
    raise AssertionError("unknown model accepted")
except openai.NotFoundError as e:
    assert e.body["code"] == "model_not_found", e.body
    assert "gpt-9-ultra" in e.body["message"]
ok("unknown_model")

# malformed: wrong field type
try:
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], temperature="warm")
    raise AssertionError("bad temperature accepted")
except openai.BadRequestError as e:
    assert e.body["param"] == "temperature", e.body
ok("bad_field")
