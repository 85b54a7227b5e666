"""Drives Hermes's Responses door with the official `openai` package, as Codex or the Agents SDK would.

Usage: python sdk_responses.py BASE_URL CLIENT_KEY OTHER_CLIENT_KEY
Prints one `ok <scenario>` line per passed scenario (and `id <name> <value>` lines the Rust test
reads); any failed assertion exits non-zero. tests/doors.rs sets up the backends: `agent`, a
tool-using mock model, answers everything.
"""
import json
import sys

import openai
from openai import OpenAI

base_url, key, other_key = sys.argv[1], sys.argv[2], sys.argv[3]
client = OpenAI(base_url=base_url + "/v1", api_key=key, max_retries=0, timeout=30)
other = OpenAI(base_url=base_url + "/v1", api_key=other_key, max_retries=0, timeout=30)


def ok(name):
    print("ok", name, flush=True)


# A plain answer, with instructions.
raw = client.responses.with_raw_response.create(model="auto", instructions="You are terse.", input="Say hello")
r = raw.parse()
assert r.id.startswith("resp_"), r.id
assert r.object == "response" and r.status == "completed", r
assert r.output_text == "Hello from agent", r.output_text
assert r.usage.input_tokens == 20 and r.usage.output_tokens == 5 and r.usage.total_tokens == 25, r.usage
assert r.usage.input_tokens_details.cached_tokens == 8, r.usage
assert r.instructions == "You are terse."
assert raw.headers["x-hermes-backend"] == "agent", dict(raw.headers)
assert raw.headers["x-hermes-request-id"].startswith("req_")
print("id plain", raw.headers["x-hermes-request-id"], flush=True)
ok("create")

# Streaming: the named events in their documented order, numbered.
events = list(client.responses.create(model="auto", input="Stream a hello", stream=True))
types = [e.type for e in events]
expected_head = ["response.created", "response.in_progress", "response.output_item.added", "response.content_part.added"]
assert types[:4] == expected_head, types
deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
assert len(deltas) >= 2, types
tail = ["response.output_text.done", "response.content_part.done", "response.output_item.done", "response.completed"]
assert types[-4:] == tail, types
assert [e.sequence_number for e in events] == list(range(len(events))), [e.sequence_number for e in events]
done = events[-1].response
assert done.output_text == "".join(deltas) == "Hello from agent", (done.output_text, deltas)
assert done.usage.total_tokens == 25, done.usage
ok("stream")

# The SDK's stream helper reads the same events.
with client.responses.stream(model="auto", input="Stream again") as s:
    text = "".join(e.delta for e in s if e.type == "response.output_text.delta")
    final = s.get_final_response()
assert text == final.output_text == "Hello from agent", (text, final.output_text)
ok("stream_helper")

# A function tool round trip, continued with previous_response_id.
tools = [{"type": "function", "name": "get_weather", "description": "Weather in a city",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}, "strict": True}]
first = client.responses.create(model="auto", input="What is the weather in Paris?", tools=tools)
calls = [o for o in first.output if o.type == "function_call"]
assert len(calls) == 1, first.output
call = calls[0]
assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "Paris"}, call
second = client.responses.create(
    model="auto",
    previous_response_id=first.id,
    input=[{"type": "function_call_output", "call_id": call.call_id, "output": "18C and sunny"}],
    tools=tools,
)
assert second.output_text == "Done: 18C and sunny", second.output_text
assert second.previous_response_id == first.id
print("id tool_second", second.id, flush=True)
ok("tool_round_trip")

# The same round trip streamed: the call's arguments arrive as deltas.
events = list(client.responses.create(model="auto", input="Weather in Paris, streamed", tools=tools, stream=True))
types = [e.type for e in events]
assert "response.function_call_arguments.delta" in types and "response.function_call_arguments.done" in types, types
item = [e for e in events if e.type == "response.output_item.done"][0].item
assert item.type == "function_call" and json.loads(item.arguments) == {"city": "Paris"}, item
ok("tool_stream")

# Structured output: text.format reaches the backend as response_format (checked by the Rust side).
client.responses.create(
    model="auto",
    input="Give me a JSON city",
    text={"format": {"type": "json_schema", "name": "city", "schema": {"type": "object", "properties": {"name": {"type": "string"}}}, "strict": True}},
    reasoning={"effort": "low"},
    max_output_tokens=64,
)
ok("text_format")

# Stored responses: retrieve, visible to no other key, delete.
got = client.responses.retrieve(first.id)
assert got.id == first.id and got.output[0].type == "function_call", got
try:
    other.responses.retrieve(first.id)
    raise AssertionError("another key saw a stored response")
except openai.NotFoundError:
    pass
try:
    other.responses.create(model="auto", previous_response_id=first.id, input="continue")
    raise AssertionError("another key continued a stored response")
except openai.NotFoundError as e:
    assert e.body["param"] == "previous_response_id", e.body
deleted = client.responses.delete(first.id)
try:
    client.responses.retrieve(first.id)
    raise AssertionError("a deleted response was still there")
except openai.NotFoundError:
    pass
ok("store")

# Not stored when asked not to.
unstored = client.responses.create(model="auto", input="forget me", store=False)
try:
    client.responses.retrieve(unstored.id)
    raise AssertionError("store=false was stored")
except openai.NotFoundError:
    pass
ok("store_false")

# Bad input: OpenAI's error shape, the field named.
try:
    client.responses.create(model="auto", input=[{"type": "function_call_output"}])
    raise AssertionError("a malformed item was accepted")
except openai.BadRequestError as e:
    assert e.status_code == 400 and e.body["param"] == "input[0].call_id", e.body
try:
    client.responses.create(model="auto", input="x", previous_response_id="resp_doesnotexist")
    raise AssertionError("an unknown previous_response_id was accepted")
except openai.NotFoundError as e:
    assert e.body["code"] == "previous_response_not_found", e.body
ok("bad_input")
