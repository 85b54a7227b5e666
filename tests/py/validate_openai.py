#!/usr/bin/env python3
"""Validate gateway answers against OpenAI's published JSON schemas.

Usage:
    python validate_openai.py SCHEMA_NAME FILE

SCHEMA_NAME  a schema in tests/data/openapi/ without ".json", e.g.
             CreateChatCompletionResponse, CreateChatCompletionStreamResponse,
             CreateEmbeddingResponse, ErrorResponse, ListModelsResponse,
             Response, ResponseStreamEvent
             (a path to a .json schema file is accepted too).
FILE         a file holding either one JSON document, or a Server-Sent-Events
             stream body ("data: {...}" events separated by blank lines,
             ending with "data: [DONE]"). "-" reads standard input.

Stream handling:
  * every `data:` event is parsed as JSON and validated against SCHEMA_NAME;
  * `data: [DONE]` ends the stream; any event after it is an error, a missing
    [DONE] is only a warning;
  * an `event: error` event (and a bare `data: {"error": {...}}` event, the
    form OpenAI itself uses mid-stream) is NOT a chunk: it is printed under
    "error event", checked against ErrorResponse.json when that file exists
    (schema violations there count as errors), but its presence alone does
    not make the run fail;
  * comment lines (": ...") and `id:` / `retry:` fields are ignored;
  * against ResponseStreamEvent every named event (error too) is validated
    against the schema, its name must equal its data's `type`, and no
    [DONE] is expected.

Every error is printed with the JSON path of the offending value inside its
document ($ = document root). Exit status: 0 if everything is valid, 1 on any
error, 2 on bad usage / unreadable schema.

Needs: Python >= 3.8, `pip install jsonschema` (Draft202012Validator).
"""
import json
import os
import sys

try:
    from jsonschema import Draft202012Validator
except ImportError:  # pragma: no cover
    print("validate_openai.py: the 'jsonschema' package is missing "
          "(pip install jsonschema)", file=sys.stderr)
    sys.exit(2)

HERE = os.path.dirname(os.path.abspath(__file__))
SCHEMA_DIR = os.environ.get(
    "OPENAI_SCHEMA_DIR",
    os.path.normpath(os.path.join(HERE, "..", "data", "openapi")))


def schema_path(name):
    if name.endswith(".json") or os.sep in name:
        return name
    return os.path.join(SCHEMA_DIR, name + ".json")


def load_validator(name):
    path = schema_path(name)
    with open(path, encoding="utf-8") as f:
        schema = json.load(f)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def json_path(error):
    # jsonschema >= 4.0 has error.json_path; build it by hand otherwise.
    p = getattr(error, "json_path", None)
    if p is not None:
        return p
    out = "$"
    for part in error.absolute_path:
        out += "[%d]" % part if isinstance(part, int) else "." + str(part)
    return out


def short(value, limit=120):
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def report_errors(validator, doc, label, indent="  "):
    """Print every schema error of doc; return how many there were."""
    errors = sorted(validator.iter_errors(doc),
                    key=lambda e: (list(map(str, e.absolute_path)), e.message))
    for err in errors:
        print("%sERROR %s at %s: %s" % (indent, label, json_path(err), err.message))
        print("%s      schema: %s" % (
            indent, "/".join(map(str, err.absolute_schema_path)) or "(root)"))
        # anyOf/oneOf: show why each alternative failed
        for sub in sorted(err.context or [], key=lambda e: list(map(str, e.relative_schema_path))):
            print("%s        - alt %s at %s: %s" % (
                indent, sub.relative_schema_path[0] if sub.relative_schema_path else "?",
                json_path(sub), sub.message))
    return len(errors)


def looks_like_sse(text):
    for line in text.splitlines():
        s = line.strip()
        if not s:
            continue
        return s.startswith(("data:", "event:", ":", "id:", "retry:"))
    return False


def parse_sse(text):
    """Yield (event_name, data, line_no) per SSE event (WHATWG rules, simplified)."""
    event, data, start = None, [], None
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    for no, line in enumerate(lines, 1):
        if line == "":
            if data or event is not None:
                yield event or "message", "\n".join(data), start
            event, data, start = None, [], None
            continue
        if line.startswith(":"):
            continue
        field, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if start is None:
            start = no
        if field == "data":
            data.append(value)
        elif field == "event":
            event = value
        elif field in ("id", "retry"):
            pass
        else:
            yield "(bad-line)", line, no
    if data or event is not None:
        yield event or "message", "\n".join(data), start


def main(argv):
    if len(argv) != 3 or argv[1] in ("-h", "--help"):
        print(__doc__, file=sys.stderr)
        return 2
    name, file_arg = argv[1], argv[2]
    try:
        validator = load_validator(name)
    except Exception as exc:  # noqa: BLE001
        print("cannot load schema %s: %s" % (schema_path(name), exc), file=sys.stderr)
        return 2
    err_validator = None
    try:
        if os.path.exists(schema_path("ErrorResponse")):
            err_validator = load_validator("ErrorResponse")
    except Exception:  # noqa: BLE001
        err_validator = None

    if file_arg == "-":
        text = sys.stdin.read()
    else:
        with open(file_arg, encoding="utf-8") as f:
            text = f.read()

    total_errors = 0
    if not looks_like_sse(text):
        try:
            doc = json.loads(text)
        except ValueError as exc:
            print("ERROR: %s is neither JSON nor an SSE stream: %s" % (file_arg, exc))
            return 1
        total_errors += report_errors(validator, doc, "document", indent="")
        if total_errors:
            print("FAIL: %d error(s) against %s" % (total_errors, name))
            return 1
        print("OK: document valid against %s" % name)
        return 0

    chunks = error_events = 0
    done_seen = False
    # Responses streams name every event and end without [DONE].
    named_events = os.path.basename(name).startswith("ResponseStreamEvent")
    for n, (event, data, line) in enumerate(parse_sse(text), 1):
        where = "event #%d (line %d)" % (n, line)
        if event == "(bad-line)":
            print("ERROR %s: not an SSE field line: %r" % (where, data))
            total_errors += 1
            continue
        if done_seen:
            print("ERROR %s: event after data: [DONE]: %s" % (where, short(data)))
            total_errors += 1
            continue
        if data.strip() == "[DONE]":
            done_seen = True
            continue
        try:
            doc = json.loads(data)
        except ValueError as exc:
            print("ERROR %s: data is not JSON (%s): %s" % (where, exc, short(data)))
            total_errors += 1
            continue
        if named_events:
            # Responses streams: every event, `error` included, is one of the schema's union and
            # carries its own name as `type`.
            kind = doc.get("type") if isinstance(doc, dict) else None
            if kind != event:
                print("ERROR %s: event name %r but data type %r" % (where, event, kind))
                total_errors += 1
            chunks += 1
            total_errors += report_errors(validator, doc, "event %s %s" % (event, where))
            continue
        is_error_event = event == "error" or (
            isinstance(doc, dict) and "error" in doc and "object" not in doc)
        if is_error_event:
            error_events += 1
            print("error-event %s (event: %s): %s" % (where, event, short(doc, 300)))
            if err_validator is not None:
                total_errors += report_errors(err_validator, doc,
                                              "in error event " + where)
            continue
        if event != "message":
            print("note %s: unexpected event name %r, validating its data as a chunk"
                  % (where, event))
        chunks += 1
        total_errors += report_errors(validator, doc, "chunk " + where)

    if not done_seen and not named_events:
        print("warning: stream has no 'data: [DONE]'")
    summary = "%d chunk(s), %d error event(s), [DONE] %s" % (
        chunks, error_events, "seen" if done_seen else "missing")
    if total_errors:
        print("FAIL: %d error(s) against %s; %s" % (total_errors, name, summary))
        return 1
    print("OK: stream valid against %s; %s" % (name, summary))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
