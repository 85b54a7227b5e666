"""Drives Hermes's Messages door with the official `anthropic` package, as Claude Code would.

Usage: python sdk_messages.py BASE_URL CLIENT_KEY
Prints one `ok <scenario>` line per passed scenario; any failed assertion exits non-zero.
tests/doors.rs sets up the backends: `agent` (a tool-using mock model), `broken` (always 500)
and `busy` (always 429), the last two reached only through the one model each serves.
"""
import sys

import anthropic
from anthropic import Anthropic

base_url, key = sys.argv[1], sys.argv[2]
# The SDK sends the key as x-api-key. max_retries=0: Hermes's answers are tested, not retries.
client = Anthropic(base_url=base_url, api_key=key, max_retries=0, timeout=30)


def ok(name):
    print("ok", name, flush=True)


# A plain message, with a system prompt in blocks (as Claude Code sends it).
raw = client.messages.with_raw_response.create(
    model="auto",
    max_tokens=256,
    system=[{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}],
    messages=[{"role": "user", "content": "Say hello"}],
)
m = raw.parse()
assert m.type == "message" and m.role == "assistant", m
assert m.content[0].type == "text" and m.content[0].text == "Hello from agent", m.content
assert m.stop_reason == "end_turn", m.stop_reason
assert m.usage.output_tokens == 5, m.usage
assert m.usage.input_tokens == 12 and m.usage.cache_read_input_tokens == 8, m.usage
assert raw.headers["x-hermes-backend"] == "agent", dict(raw.headers)
ok("create")

# Streaming with the SDK's helper: Anthropic's named events, and the final message.
with client.messages.stream(model="auto", max_tokens=256, messages=[{"role": "user", "content": "Stream a hello"}]) as s:
    text = "".join(s.text_stream)
    final = s.get_final_message()
assert text == "Hello from agent", text
assert final.content[0].text == text and final.stop_reason == "end_turn", final
assert final.usage.output_tokens == 5, final.usage
ok("stream")

# The raw events, in their documented order.
events = list(client.messages.create(model="auto", max_tokens=64, messages=[{"role": "user", "content": "raw events"}], stream=True))
types = [e.type for e in events]
assert types[0] == "message_start" and types[1] == "content_block_start", types
assert types[-3:] == ["content_block_stop", "message_delta", "message_stop"], types
assert set(types[2:-3]) == {"content_block_delta"}, types
ok("stream_events")

# count_tokens
count = client.messages.count_tokens(model="auto", messages=[{"role": "user", "content": "How many tokens is this sentence?"}])
assert count.input_tokens > 0, count
ok("count_tokens")

# A tool-use round trip.
tools = [{"name": "get_weather", "description": "Weather in a city",
          "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]
ask = [{"role": "user", "content": "What is the weather in Paris?"}]
first = client.messages.create(model="auto", max_tokens=256, tools=tools, tool_choice={"type": "auto"}, messages=ask)
assert first.stop_reason == "tool_use", first
use = [b for b in first.content if b.type == "tool_use"][0]
assert use.name == "get_weather" and use.input == {"city": "Paris"}, use
second = client.messages.create(
    model="auto",
    max_tokens=256,
    tools=tools,
    messages=ask
    + [
        {"role": "assistant", "content": first.content},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "18C and sunny"}]},
    ],
)
assert second.content[0].text == "Done: 18C and sunny", second.content
ok("tool_round_trip")

# The same call streamed: a tool_use block whose input arrives as JSON deltas.
with client.messages.stream(model="auto", max_tokens=256, tools=tools, messages=ask) as s:
    final = s.get_final_message()
use = [b for b in final.content if b.type == "tool_use"][0]
assert use.input == {"city": "Paris"} and final.stop_reason == "tool_use", final
ok("tool_stream")

# The SDK's own exception classes, from Anthropic-shaped errors.
bad_key = Anthropic(base_url=base_url, api_key="sk-wrong", max_retries=0)
try:
    bad_key.messages.create(model="auto", max_tokens=8, messages=[{"role": "user", "content": "hi"}])
    raise AssertionError("a wrong key was accepted")
except anthropic.AuthenticationError as e:
    assert e.status_code == 401 and e.body["type"] == "error" and e.body["error"]["type"] == "authentication_error", e.body
try:
    client.messages.create(model="no-such-model", max_tokens=8, messages=[{"role": "user", "content": "hi"}])
    raise AssertionError("an unknown model was accepted")
except anthropic.NotFoundError as e:
    assert e.body["error"]["type"] == "not_found_error", e.body
try:
    client.messages.create(model="busy-model", max_tokens=8, messages=[{"role": "user", "content": "hi"}])
    raise AssertionError("a busy backend's 429 did not reach the client")
except anthropic.RateLimitError as e:
    assert e.body["error"]["type"] == "rate_limit_error", e.body
try:
    client.messages.create(model="broken-model", max_tokens=8, messages=[{"role": "user", "content": "hi"}])
    raise AssertionError("a broken backend's failure did not reach the client")
except anthropic.InternalServerError as e:
    assert e.status_code == 502 and e.body["error"]["type"] == "api_error", e.body
try:
    client.messages.create(model="auto", max_tokens=8, messages=[{"role": "user"}])
    raise AssertionError("a message without content was accepted")
except anthropic.BadRequestError as e:
    assert e.body["error"]["type"] == "invalid_request_error", e.body
    assert e.body["error"]["message"].startswith("messages.0.content"), e.body
ok("errors")
