#!/usr/bin/env python3
"""Sends logs, metrics or traces to an OTLP/HTTP endpoint through the real
OpenTelemetry Python SDK and its protobuf exporters (tests/otlp/requirements.txt,
installed by scripts/test.sh into target/otlp-py-venv).

    send.py --endpoint http://127.0.0.1:PORT --signal logs|metrics|traces \
            --run RUNID [--header bearer|x-api-key|pair] --key KEY \
            [--key-id ID] [--count N] [--timeout SECS]

Each signal goes out as exactly one gzip-compressed application/x-protobuf POST
to ENDPOINT/v1/<signal>. The streaming key travels as `Authorization: Bearer
KEY` (bearer, the default), `X-API-Key: KEY` (x-api-key) or `X-API-Key-ID: ID`
plus `X-API-Key-Secret: KEY` (pair). The resource carries
service.name=otlp-test-py and run.id=RUNID.

Prints one JSON line to stdout describing what was sent, and exits 1 if the
export failed (the SDK only logs a failed export; wrapper exporters here record
the exporters' results), 2 on bad arguments.
"""

import argparse
import json
import sys
import time

from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.exporter.otlp.proto.http.version import __version__ as EXPORTER_VERSION
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import (
    BatchLogRecordProcessor,
    LogRecordExporter,
    LogRecordExportResult,
)
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricExportResult
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

SERVICE = "otlp-test-py"
SCOPE = "sluice.otlp-test"
SCOPE_VERSION = "1.0.0"
# Long enough that the batch processors never export on their own timer: the
# one export is the force_flush below, so every record lands in one request.
NEVER_MS = 600_000


def hex_trace(trace_id):
    return format(trace_id, "032x")


def hex_span(span_id):
    return format(span_id, "016x")


class Recording:
    """Wraps an exporter and records every export() result."""

    def __init__(self, inner):
        self.inner = inner
        self.results = []

    def ok(self):
        return bool(self.results) and all(self.results)


class RecordingLogExporter(LogRecordExporter, Recording):
    def __init__(self, inner):
        Recording.__init__(self, inner)

    def export(self, batch):
        result = self.inner.export(batch)
        self.results.append(result == LogRecordExportResult.SUCCESS)
        return result

    def shutdown(self):
        self.inner.shutdown()

    def force_flush(self, timeout_millis=30_000):
        return self.inner.force_flush(timeout_millis)


class RecordingSpanExporter(SpanExporter, Recording):
    def __init__(self, inner):
        Recording.__init__(self, inner)

    def export(self, spans):
        result = self.inner.export(spans)
        self.results.append(result == SpanExportResult.SUCCESS)
        return result

    def shutdown(self):
        self.inner.shutdown()

    def force_flush(self, timeout_millis=30_000):
        return self.inner.force_flush(timeout_millis)


def key_headers(args):
    if args.header == "bearer":
        return {"Authorization": f"Bearer {args.key}"}
    if args.header == "x-api-key":
        return {"X-API-Key": args.key}
    return {"X-API-Key-ID": args.key_id, "X-API-Key-Secret": args.key}


def exporter_kwargs(args, signal):
    return {
        "endpoint": f"{args.endpoint.rstrip('/')}/v1/{signal}",
        "headers": key_headers(args),
        "compression": Compression.Gzip,
        "timeout": args.timeout,
    }


SEVERITIES = [
    (SeverityNumber.INFO, "INFO"),
    (SeverityNumber.WARN, "WARN"),
    (SeverityNumber.ERROR, "ERROR"),
]


def send_logs(args, resource):
    exporter = RecordingLogExporter(OTLPLogExporter(**exporter_kwargs(args, "logs")))
    provider = LoggerProvider(resource=resource)
    provider.add_log_record_processor(
        BatchLogRecordProcessor(
            exporter,
            schedule_delay_millis=NEVER_MS,
            max_export_batch_size=max(args.count, 1),
            max_queue_size=max(args.count, 2048),
        )
    )
    logger = provider.get_logger(SCOPE, SCOPE_VERSION)
    # A tracer with no processor: its spans are never exported, they only give
    # the odd-numbered records a real trace_id/span_id.
    tracer = TracerProvider(resource=resource).get_tracer(SCOPE, SCOPE_VERSION)

    bodies, severities, trace_ids, span_ids = [], [], [], []
    for i in range(args.count):
        number, text = SEVERITIES[i % len(SEVERITIES)]
        body = f"otlp-test-py run {args.run} log {i}"
        attributes = {
            "run.id": args.run,
            "index": i,
            "ratio": i + 0.5,
            "even": i % 2 == 0,
            "tags": ["otlp", "py", f"n{i}"],
        }

        def emit():
            logger.emit(
                timestamp=time.time_ns(),
                severity_number=number,
                severity_text=text,
                body=body,
                attributes=attributes,
            )

        if i % 2 == 1:
            with tracer.start_as_current_span(f"otlp-test-log-span-{i}") as span:
                ctx = span.get_span_context()
                trace_ids.append(hex_trace(ctx.trace_id))
                span_ids.append(hex_span(ctx.span_id))
                emit()
        else:
            trace_ids.append("")
            span_ids.append("")
            emit()
        bodies.append(body)
        severities.append(text)

    provider.force_flush()
    provider.shutdown()
    return exporter.ok(), {
        "records": args.count,
        "bodies": bodies,
        "severities": severities,
        "trace_ids": trace_ids,
        "span_ids": span_ids,
    }


def send_metrics(args, resource):
    exporter = OTLPMetricExporter(**exporter_kwargs(args, "metrics"))
    # The reader a PeriodicExportingMetricReader would be, minus its timer and
    # its second export at shutdown: collect once, export once.
    reader = InMemoryMetricReader(
        preferred_temporality=exporter._preferred_temporality,
        preferred_aggregation=exporter._preferred_aggregation,
    )
    provider = MeterProvider(
        resource=resource,
        metric_readers=[reader],
        views=[
            View(
                instrument_name="otlp_test.payload.size",
                aggregation=ExponentialBucketHistogramAggregation(max_size=160),
            )
        ],
    )
    meter = provider.get_meter(SCOPE, SCOPE_VERSION)
    attrs = {"run.id": args.run, "route": "/v1/metrics"}

    counter = meter.create_counter("otlp_test.requests", unit="1", description="requests sent")
    counter.add(3, {**attrs, "outcome": "ok"})
    counter.add(1, {**attrs, "outcome": "error"})

    updown = meter.create_up_down_counter("otlp_test.queue.depth", unit="{item}", description="queue depth")
    updown.add(7, attrs)
    updown.add(-2, attrs)

    gauge = meter.create_gauge("otlp_test.temperature", unit="Cel", description="last temperature")
    gauge.set(21.5, {**attrs, "room": "a"})

    histogram = meter.create_histogram("otlp_test.latency", unit="ms", description="request latency")
    latencies = [1.5, 7.0, 12.0, 80.0, 420.0]
    for v in latencies:
        histogram.record(v, attrs)

    exp_histogram = meter.create_histogram("otlp_test.payload.size", unit="By", description="payload size")
    sizes = [10, 100, 1_000, 1_000, 65_536]
    for v in sizes:
        exp_histogram.record(v, attrs)

    data = reader.get_metrics_data()
    result = exporter.export(data, timeout_millis=args.timeout * 1000)
    provider.shutdown()
    exporter.shutdown()

    names, points = [], 0
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                names.append(m.name)
                points += len(m.data.data_points)
    return result == MetricExportResult.SUCCESS, {
        "records": points,
        "metric_names": names,
        "data_points": points,
        "kinds": {
            "otlp_test.requests": "sum",
            "otlp_test.queue.depth": "sum",
            "otlp_test.temperature": "gauge",
            "otlp_test.latency": "histogram",
            "otlp_test.payload.size": "exponential_histogram",
        },
        "counter_total": 4,
        "updown_total": 5,
        "gauge_value": 21.5,
        "histogram_count": len(latencies),
        "histogram_sum": sum(latencies),
        "exp_histogram_count": len(sizes),
        "exp_histogram_sum": sum(sizes),
    }


def send_traces(args, resource):
    exporter = RecordingSpanExporter(OTLPSpanExporter(**exporter_kwargs(args, "traces")))
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(
        BatchSpanProcessor(
            exporter,
            schedule_delay_millis=NEVER_MS,
            max_export_batch_size=max(4 * args.count, 1),
            max_queue_size=max(4 * args.count, 2048),
        )
    )
    tracer = provider.get_tracer(SCOPE, SCOPE_VERSION)

    spans = []  # (name, trace_id, span_id, parent_span_id) in order of ending

    def record(span, name, parent=""):
        ctx = span.get_span_context()
        spans.append((name, hex_trace(ctx.trace_id), hex_span(ctx.span_id), parent))

    for i in range(args.count):
        # A root span in a trace of its own, the target of the link below.
        with tracer.start_as_current_span(
            "otlp-test-link-target", kind=SpanKind.INTERNAL, attributes={"run.id": args.run, "tree": i}
        ) as target:
            target_ctx = target.get_span_context()
        record(target, "otlp-test-link-target")

        with tracer.start_as_current_span(
            "otlp-test-parent",
            kind=SpanKind.SERVER,
            attributes={"run.id": args.run, "tree": i, "http.request.method": "POST", "http.route": "/v1/traces"},
        ) as parent:
            parent_id = hex_span(parent.get_span_context().span_id)
            with tracer.start_as_current_span(
                "otlp-test-child-event", kind=SpanKind.CLIENT, attributes={"run.id": args.run, "peer.port": 4318}
            ) as child:
                child.add_event(
                    "otlp-test-event",
                    attributes={"run.id": args.run, "attempt": 1, "ok": True, "weight": 0.25, "ids": [1, 2, 3]},
                )
            record(child, "otlp-test-child-event", parent_id)
            with tracer.start_as_current_span(
                "otlp-test-child-link",
                kind=SpanKind.INTERNAL,
                attributes={"run.id": args.run},
                links=[Link(target_ctx, attributes={"link.reason": "otlp-test"})],
            ) as child:
                child.set_status(Status(StatusCode.ERROR, f"otlp-test failure {args.run}"))
            record(child, "otlp-test-child-link", parent_id)
        record(parent, "otlp-test-parent")

    provider.force_flush()
    provider.shutdown()
    return exporter.ok(), {
        "records": len(spans),
        "span_names": [s[0] for s in spans],
        "trace_ids": [s[1] for s in spans],
        "span_ids": [s[2] for s in spans],
        "parent_span_ids": [s[3] for s in spans],
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--endpoint", required=True, help="base URL, e.g. http://127.0.0.1:4318")
    p.add_argument("--signal", required=True, choices=["logs", "metrics", "traces"])
    p.add_argument("--run", required=True, help="run id, in the resource and in every record")
    p.add_argument("--header", default="bearer", choices=["bearer", "x-api-key", "pair"])
    p.add_argument("--key", required=True)
    p.add_argument("--key-id", help="required with --header pair")
    p.add_argument("--count", type=int, default=None, help="logs: records (5); traces: span trees (1); metrics: unused")
    p.add_argument("--timeout", type=float, default=10.0, help="per-export timeout in seconds (10)")
    args = p.parse_args()
    if args.header == "pair" and not args.key_id:
        p.error("--header pair needs --key-id")
    if args.count is None:
        args.count = 5 if args.signal == "logs" else 1
    if args.count < 1:
        p.error("--count must be at least 1")

    resource = Resource.create({"service.name": SERVICE, "run.id": args.run})
    send = {"logs": send_logs, "metrics": send_metrics, "traces": send_traces}[args.signal]
    ok, summary = send(args, resource)
    out = {
        "signal": args.signal,
        "ok": ok,
        "client": "opentelemetry-python",
        "exporter_version": EXPORTER_VERSION,
        "run": args.run,
        "service": SERVICE,
        "header": args.header,
        **summary,
    }
    print(json.dumps(out, separators=(",", ":")), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
