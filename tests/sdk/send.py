"""Sends logs and metrics to one otelraft member with the official
OpenTelemetry Python SDK, over gRPC and HTTP, and reports what it sent.

Usage: send.py --grpc HOST:PORT --http http://HOST:PORT --prefix P --count N
               [--ca CA.pem (TLS, with https:// for --http)] [--token T]

Prints one JSON line: {"logs": <records sent>, "log_failures": <failed exports>,
"metrics": <metric names>}. Exits non-zero if any export failed.
"""
import argparse
import json
import logging
import os
import sys

import grpc
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogExporter
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogExporter
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcMetricExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpMetricExporter


class Counting:
    """Wraps an exporter and counts failed exports, so the test can tell
    "acknowledged" from "dropped by the SDK"."""

    def __init__(self, inner):
        self.inner, self.failures = inner, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def export(self, batch, *args, **kwargs):
        result = self.inner.export(batch, *args, **kwargs)
        # Result enums differ between SDK releases (LogExportResult,
        # LogRecordExportResult); all of them name success SUCCESS.
        if getattr(result, "name", None) != "SUCCESS":
            self.failures += 1
        return result


def send_logs(exporter, prefix, count, service):
    resource = Resource.create({"service.name": service, "service.instance.id": prefix})
    provider = LoggerProvider(resource=resource)
    provider.add_log_record_processor(BatchLogRecordProcessor(exporter, max_export_batch_size=100))
    logger = logging.getLogger(f"otelraft-test-{prefix}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    handler = LoggingHandler(level=logging.INFO, logger_provider=provider)
    logger.addHandler(handler)
    for i in range(count):
        logger.info("%s-%06d", prefix, i)
    provider.force_flush()
    provider.shutdown()
    logger.removeHandler(handler)


def send_metrics(exporter, prefix, service):
    resource = Resource.create({"service.name": service, "service.instance.id": prefix})
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    provider = MeterProvider(resource=resource, metric_readers=[reader])
    meter = provider.get_meter("otelraft-test")
    requests = meter.create_counter(f"{prefix}_requests", unit="1", description="test counter")
    latency = meter.create_histogram(f"{prefix}_latency", unit="s", description="test histogram")
    requests.add(5, {"route": "/a"})
    requests.add(7, {"route": "/b"})
    for v in (0.1, 0.2, 0.4):
        latency.record(v, {"route": "/a"})
    provider.force_flush()
    provider.shutdown()
    return [f"{prefix}_requests", f"{prefix}_latency"]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--grpc", required=True)
    p.add_argument("--http", required=True)
    p.add_argument("--prefix", required=True)
    p.add_argument("--count", type=int, default=100)
    p.add_argument("--ca", help="CA certificate (PEM): gRPC and HTTP over TLS verified against it")
    p.add_argument("--token", help="bearer token sent as the authorization header")
    a = p.parse_args()

    # TLS as an application configures it with the SDK: gRPC credentials
    # from the CA, and the HTTP exporter's certificate_file.
    grpc_tls = {"insecure": True}
    http_tls = {}
    if a.ca:
        with open(a.ca, "rb") as f:
            grpc_tls = {"insecure": False, "credentials": grpc.ssl_channel_credentials(root_certificates=f.read())}
        http_tls = {"certificate_file": a.ca}
        # requests lets these variables override a session's own CA file
        # (psf/requests#3829), and some machines set them.
        for var in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
            os.environ.pop(var, None)
    grpc_headers = {"authorization": f"Bearer {a.token}"} if a.token else None
    http_headers = {"Authorization": f"Bearer {a.token}"} if a.token else None

    def grpc_exporter(cls):
        return cls(endpoint=a.grpc, timeout=30, headers=grpc_headers, **grpc_tls)

    def http_exporter(cls, path):
        return cls(endpoint=f"{a.http}{path}", timeout=30, headers=http_headers, **http_tls)

    grpc_logs = Counting(grpc_exporter(GrpcLogExporter))
    http_logs = Counting(http_exporter(HttpLogExporter, "/v1/logs"))
    send_logs(grpc_logs, f"{a.prefix}-grpc", a.count, "sdk-grpc")
    send_logs(http_logs, f"{a.prefix}-http", a.count, "sdk-http")

    grpc_metrics = Counting(grpc_exporter(GrpcMetricExporter))
    http_metrics = Counting(http_exporter(HttpMetricExporter, "/v1/metrics"))
    names = send_metrics(grpc_metrics, f"{a.prefix}_grpc".replace("-", "_"), "sdk-grpc")
    names += send_metrics(http_metrics, f"{a.prefix}_http".replace("-", "_"), "sdk-http")

    failures = grpc_logs.failures + http_logs.failures + grpc_metrics.failures + http_metrics.failures
    print(json.dumps({"logs": 2 * a.count, "failures": failures, "metrics": names}))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
