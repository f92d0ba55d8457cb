"""A well-behaved client: writes steadily with the official OpenTelemetry
Python SDK over OTLP/HTTP until a stop file appears, and reports what was
acknowledged.

Usage: steady.py --http URL [URL ...] --prefix P --stop-file F [--interval-ms 50]
                 [--ca CA.pem (https:// URLs)] [--token T]

One log record at a time, exported synchronously (a SimpleLogRecordProcessor)
to each member in turn, with bodies <prefix>-000000, <prefix>-000001, ...;
and a counter <prefix>_writes, one per record, exported every second to the
first member. The SDK retries what the server says to retry, within its
30 s timeout.

Prints one JSON line when stopped: {"logs": <records acknowledged>,
"failures": <records the SDK gave up on>, "slowest_ms": <slowest
acknowledgement>, "metric_failures": <failed metric exports>}.
"""
import argparse
import json
import logging
import os
import time

from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter


class Timed:
    """Wraps an exporter: times each export and counts the failed ones."""

    def __init__(self, inner):
        self.inner, self.failures, self.exported, self.slowest = inner, 0, 0, 0.0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def export(self, batch, *args, **kwargs):
        started = time.monotonic()
        result = self.inner.export(batch, *args, **kwargs)
        self.slowest = max(self.slowest, time.monotonic() - started)
        if getattr(result, "name", None) == "SUCCESS":
            self.exported += len(batch) if hasattr(batch, "__len__") else 1
        else:
            self.failures += 1
        return result


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--http", nargs="+", required=True)
    p.add_argument("--prefix", required=True)
    p.add_argument("--stop-file", required=True)
    p.add_argument("--interval-ms", type=int, default=50)
    p.add_argument("--ca", help="CA certificate (PEM) the https:// URLs are verified against")
    p.add_argument("--token", help="bearer token sent as the authorization header")
    a = p.parse_args()

    options = {"timeout": 30}
    if a.ca:
        options["certificate_file"] = a.ca
        # requests lets these variables override a session's own CA file
        # (psf/requests#3829), and some machines set them.
        for var in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
            os.environ.pop(var, None)
    if a.token:
        options["headers"] = {"Authorization": f"Bearer {a.token}"}

    resource = Resource.create({"service.name": "steady", "service.instance.id": a.prefix})
    exporters, loggers = [], []
    for i, url in enumerate(a.http):
        exporter = Timed(OTLPLogExporter(endpoint=f"{url}/v1/logs", **options))
        provider = LoggerProvider(resource=resource)
        provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
        logger = logging.getLogger(f"steady-{a.prefix}-{i}")
        logger.propagate = False
        logger.setLevel(logging.INFO)
        logger.addHandler(LoggingHandler(level=logging.INFO, logger_provider=provider))
        exporters.append((exporter, provider))
        loggers.append(logger)

    metric_exporter = Timed(OTLPMetricExporter(endpoint=f"{a.http[0]}/v1/metrics", **options))
    reader = PeriodicExportingMetricReader(metric_exporter, export_interval_millis=1000)
    meters = MeterProvider(resource=resource, metric_readers=[reader])
    writes = meters.get_meter("otelraft-steady").create_counter(f"{a.prefix}_writes", unit="1")

    i = 0
    while not os.path.exists(a.stop_file):
        loggers[i % len(loggers)].info("%s-%06d", a.prefix, i)
        writes.add(1)
        i += 1
        time.sleep(a.interval_ms / 1000)

    meters.force_flush()
    meters.shutdown()
    for _, provider in exporters:
        provider.shutdown()
    print(json.dumps({
        "written": i,
        "logs": sum(e.exported for e, _ in exporters),
        "failures": sum(e.failures for e, _ in exporters),
        "slowest_ms": int(1000 * max(e.slowest for e, _ in exporters)),
        "metric_failures": metric_exporter.failures,
    }))


if __name__ == "__main__":
    main()
