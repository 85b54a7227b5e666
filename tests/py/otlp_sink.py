"""A loopback OTLP/HTTP trace collector for the tests, decoding with the official protobuf
definitions (PyPI's `opentelemetry-proto`).

usage: otlp_sink.py PORT OUTDIR

Serves 127.0.0.1:PORT. Each POST /v1/traces (an ExportTraceServiceRequest, application/x-protobuf,
gzip accepted) appends
  - one JSON line per span to OUTDIR/spans.jsonl: trace_id, span_id, parent_span_id (lowercase
    hex, "" when empty), name, kind and status_code (the protobuf enums' ints), status_message,
    attributes (a dict of typed values: str, int, float, bool, lists, dicts), resource (the
    resource's attributes), scope (the instrumentation scope's name), events, start/end unix nanos;
  - its raw (decoded from gzip if need be) body to OUTDIR/raw.bin;
  - one JSON line to OUTDIR/requests.jsonl: path, content_type, content_encoding, bytes, spans.
It answers 200 with a serialized empty ExportTraceServiceResponse. Files are flushed after each
write. SIGTERM ends it cleanly (exit 0).
"""
import gzip
import json
import os
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

PROTOBUF = "application/x-protobuf"


def value(v):
    """An AnyValue as plain JSON."""
    which = v.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [value(x) for x in v.array_value.values]
    if which == "kvlist_value":
        return attributes(v.kvlist_value.values)
    if which == "bytes_value":
        return v.bytes_value.hex()
    return getattr(v, which)


def attributes(kvs):
    return {kv.key: value(kv.value) for kv in kvs}


def spans_of(request):
    for rs in request.resource_spans:
        resource = attributes(rs.resource.attributes)
        for ss in rs.scope_spans:
            for s in ss.spans:
                yield {
                    "trace_id": s.trace_id.hex(),
                    "span_id": s.span_id.hex(),
                    "parent_span_id": s.parent_span_id.hex(),
                    "name": s.name,
                    "kind": int(s.kind),
                    "status_code": int(s.status.code),
                    "status_message": s.status.message,
                    "attributes": attributes(s.attributes),
                    "resource": resource,
                    "scope": ss.scope.name,
                    "events": [{"name": e.name, "attributes": attributes(e.attributes)} for e in s.events],
                    "start_time_unix_nano": s.start_time_unix_nano,
                    "end_time_unix_nano": s.end_time_unix_nano,
                }


class Sink:
    def __init__(self, outdir):
        os.makedirs(outdir, exist_ok=True)
        self.lock = threading.Lock()
        self.spans = open(os.path.join(outdir, "spans.jsonl"), "a", encoding="utf-8")
        self.raw = open(os.path.join(outdir, "raw.bin"), "ab")
        self.requests = open(os.path.join(outdir, "requests.jsonl"), "a", encoding="utf-8")

    def record(self, path, headers, body):
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        spans = list(spans_of(request))
        with self.lock:
            self.raw.write(body)
            self.raw.flush()
            for s in spans:
                self.spans.write(json.dumps(s) + "\n")
            self.spans.flush()
            self.requests.write(
                json.dumps(
                    {
                        "path": path,
                        "content_type": headers.get("content-type", ""),
                        "content_encoding": headers.get("content-encoding", ""),
                        "bytes": len(body),
                        "spans": len(spans),
                    }
                )
                + "\n"
            )
            self.requests.flush()

    def close(self):
        with self.lock:
            for f in (self.spans, self.raw, self.requests):
                f.close()


def handler_for(sink):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            body = self.body()
            if self.path.split("?")[0] != "/v1/traces":
                return self.answer(404, b"", "text/plain")
            if (self.headers.get("content-encoding") or "").lower() == "gzip":
                body = gzip.decompress(body)
            try:
                sink.record(self.path, self.headers, body)
            except Exception as e:  # a body that is not an ExportTraceServiceRequest
                return self.answer(400, str(e).encode(), "text/plain")
            self.answer(200, ExportTraceServiceResponse().SerializeToString(), PROTOBUF)

        def body(self):
            if (self.headers.get("transfer-encoding") or "").lower() == "chunked":
                parts = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        return b"".join(parts)
                    parts.append(self.rfile.read(size))
                    self.rfile.readline()
            return self.rfile.read(int(self.headers.get("content-length") or 0))

        def answer(self, status, body, content_type):
            self.send_response(status)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    return Handler


def main():
    port, outdir = int(sys.argv[1]), sys.argv[2]
    sink = Sink(outdir)
    server = ThreadingHTTPServer(("127.0.0.1", port), handler_for(sink))
    server.daemon_threads = True

    def stop(*_):
        # serve_forever runs on this (the main) thread: shutdown() must come from another.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        server.serve_forever(poll_interval=0.1)
    finally:
        server.server_close()
        sink.close()


if __name__ == "__main__":
    main()
