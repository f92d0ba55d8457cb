"""Sends a fixed set of metrics to one otelraft member with the official
OpenTelemetry Python SDK (OTLP/gRPC), so an export test can check the exact
series and values that reach Prometheus.

Usage: send_metrics.py --grpc HOST:PORT

Sends, for resource {service.namespace=shop, service.name=checkout,
service.instance.id=i-1, deployment.environment=test}:
  - counter   orders (unit "1"):     +5 {route=/a}, +7 {route=/b}
  - gauge     temperature (unit Cel): 21.5 {room=lab}
  - histogram latency (unit s):      0.1, 0.2, 0.4 {route=/a}
Prints one JSON line {"failures": N}; exits non-zero if an export failed.
"""
import argparse
import json
import sys

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter


class Counting:
    """Counts failed exports, so "acknowledged" differs from "dropped"."""

    def __init__(self, inner):
        self.inner, self.failures = inner, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def export(self, batch, *args, **kwargs):
        result = self.inner.export(batch, *args, **kwargs)
        if getattr(result, "name", None) != "SUCCESS":
            self.failures += 1
        return result


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--grpc", required=True)
    a = p.parse_args()
    exporter = Counting(OTLPMetricExporter(endpoint=a.grpc, insecure=True, timeout=30))
    resource = Resource.create({
        "service.namespace": "shop",
        "service.name": "checkout",
        "service.instance.id": "i-1",
        "deployment.environment": "test",
    })
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    provider = MeterProvider(resource=resource, metric_readers=[reader])
    meter = provider.get_meter("otelraft-export-test", version="1.2.3")
    orders = meter.create_counter("orders", unit="1", description="orders placed")
    orders.add(5, {"route": "/a"})
    orders.add(7, {"route": "/b"})
    temperature = meter.create_gauge("temperature", unit="Cel", description="room temperature")
    temperature.set(21.5, {"room": "lab"})
    latency = meter.create_histogram("latency", unit="s", description="request latency")
    for v in (0.1, 0.2, 0.4):
        latency.record(v, {"route": "/a"})
    provider.force_flush()
    provider.shutdown()
    print(json.dumps({"failures": exporter.failures}))
    sys.exit(1 if exporter.failures else 0)


if __name__ == "__main__":
    main()
