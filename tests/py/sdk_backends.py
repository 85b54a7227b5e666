"""Multi-turn chat and streams through each backend type, with the official `openai` package.

Usage: python sdk_backends.py BASE_URL MODEL@BACKEND=EXPECTED [...]
Each call is pinned to BACKEND with `x-hermes-backend`; EXPECTED is text each answer must
contain. Prints `ok <model> <backend that answered>` per pair.
"""
import sys

from openai import OpenAI

base_url = sys.argv[1]
client = OpenAI(base_url=base_url + "/v1", api_key="unused", max_retries=0, timeout=30)

conversation = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Hello?"},
    {"role": "assistant", "content": "Hi! How can I help?"},
    {"role": "user", "content": "Tell me who you are."},
]

for pair in sys.argv[2:]:
    target, expected = pair.split("=", 1)
    model, pin = target.split("@", 1)
    pinned = {"x-hermes-backend": pin}
    raw = client.chat.completions.with_raw_response.create(
        model=model, messages=conversation, temperature=0.3, max_tokens=64, extra_headers=pinned
    )
    chat = raw.parse()
    text = chat.choices[0].message.content
    assert expected in text, (model, text)
    assert chat.choices[0].finish_reason == "stop", chat
    assert chat.usage.prompt_tokens > 0 and chat.usage.completion_tokens > 0, chat.usage
    backend = raw.headers["x-hermes-backend"]

    stream = client.chat.completions.create(
        model=model, messages=conversation, stream=True, stream_options={"include_usage": True}, extra_headers=pinned
    )
    streamed, usage, finish = "", None, None
    for c in stream:
        if c.choices:
            streamed += c.choices[0].delta.content or ""
            finish = c.choices[0].finish_reason or finish
        if c.usage:
            usage = c.usage
    assert streamed == text, (model, streamed, text)
    assert finish == "stop", finish
    assert usage is not None and usage.completion_tokens > 0, usage
    print("ok", model, backend, flush=True)
