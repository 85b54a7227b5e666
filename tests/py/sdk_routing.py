"""The routing brain as a client sees it, through the official `openai` package.

Usage: python sdk_routing.py BASE_URL
Backends (set up by tests/routing.rs): home (local, free), cheap, premium (job-type routing
for code), busy (answers 429 with retry-after), cutter (streams break after the first byte).
"""
import sys

import openai
from openai import OpenAI

client = OpenAI(base_url=sys.argv[1] + "/v1", api_key="unused", max_retries=0, timeout=30)


def ok(name):
    print("ok", name, flush=True)


def ask(content, model="auto", **headers):
    raw = client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": content}], extra_headers=headers
    )
    return raw.headers, raw.parse()


h, _ = ask("hello there, how are you?")
assert h["x-hermes-backend"] == "home" and h["x-hermes-job-type"] == "general", dict(h)
h, _ = ask("hello there, how are you?", **{"x-hermes-criteria": "quality_first"})
assert h["x-hermes-backend"] == "premium", dict(h)
h, _ = ask("hello there, how are you?", **{"x-hermes-criteria": "speed_first"})
assert h["x-hermes-backend"] == "cheap", dict(h)
ok("criteria")

h, _ = ask("Write a Python function that reverses a linked list in place.")
assert h["x-hermes-job-type"] == "code_generation" and h["x-hermes-backend"] == "premium", dict(h)
ok("job_type_routing")

try:
    ask("hello", model="big", **{"x-hermes-budget-cents": "0.0000001"})
    raise AssertionError("over budget accepted")
except openai.APIStatusError as e:
    assert e.status_code == 402 and e.body["code"] == "budget_exceeded", e.body
h, _ = ask("hello", **{"x-hermes-budget-cents": "0.0000001", "x-hermes-criteria": "quality_first"})
assert h["x-hermes-backend"] == "home", "free backends are never blocked by a budget"
ok("budget")

h, _ = ask("Summarise this note and reply to bob.smith@example.com about it", model="llama", **{"x-hermes-criteria": "quality_first"})
assert h["x-hermes-backend"] == "home", ("personal data stays local", dict(h))
h, _ = ask("what is the capital of France?", model="llama", **{"x-hermes-privacy": "local", "x-hermes-criteria": "speed_first"})
assert h["x-hermes-backend"] == "home", dict(h)
try:
    ask("my card is 4111 1111 1111 1111, is that fine?", model="big")
    raise AssertionError("private request sent to a remote backend")
except openai.APIStatusError as e:
    assert e.status_code == 503 and "not sent anywhere" in e.body["message"], e.body
ok("privacy")

h, _ = ask("hello", **{"x-hermes-debug": "1"})
assert h["x-hermes-route-reason"].startswith("general job, cost_first: home (free"), h.get("x-hermes-route-reason")
ok("reason")

h, _ = ask("hello", model="shared")
assert (h["x-hermes-backend"], h["x-hermes-attempts"]) == ("cheap", "2"), dict(h)
h, _ = ask("hello again", model="shared")
assert (h["x-hermes-backend"], h["x-hermes-attempts"]) == ("cheap", "1"), ("retry-after honoured", dict(h))
ok("retry_after")

stream = client.chat.completions.create(model="cut-model", messages=[{"role": "user", "content": "hi"}], stream=True)
try:
    for _ in stream:
        pass
    raise AssertionError("a cut stream ended cleanly")
except openai.APIError as e:
    assert "broke off" in str(e.message), e.message
ok("cut_stream")

for _ in range(2):
    raw = client.chat.completions.with_raw_response.create(
        model="mini", temperature=0, messages=[{"role": "user", "content": "deterministic please"}]
    )
assert raw.headers.get("x-hermes-cache") == "hit", dict(raw.headers)
assert raw.parse().choices[0].message.content == "Hello from cheap"
ok("cache")

# A hang past the timeout and a refused connection are tried (the cheapest first, in configured order),
# then `early` answers; it only breaks streams.
raw = client.chat.completions.with_raw_response.create(model="flaky-model", messages=[{"role": "user", "content": "hi"}])
assert (raw.headers["x-hermes-backend"], raw.headers["x-hermes-attempts"]) == ("early", "3"), dict(raw.headers)
# Streamed, `early` cuts before its first byte as well: the paid backend behind all three answers.
stream = client.chat.completions.create(model="flaky-model", messages=[{"role": "user", "content": "hi"}], stream=True)
assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "Hello from cheap"
ok("every_failure_kind")
