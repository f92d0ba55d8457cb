//! Realistic OTLP log payloads for benchmarks and compression figures:
//! service logs with varied bodies, ids and attributes, the same for the
//! same seed. A benchmark that repeats one body measures the compressor's
//! best case, not the archive's.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;

/// A string attribute.
pub fn string_kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

/// A pseudo-random generator, so the payload is the same every run.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// A logs request that looks like production traffic: ~200-byte bodies
/// from a handful of templates with varying ids, durations and paths,
/// random trace and span ids, a few attributes per record. One of four
/// services, chosen by `rng_seed`; different seeds give different records.
pub fn logs(rng_seed: u64, records: usize) -> ExportLogsServiceRequest {
    let mut rng = Lcg(rng_seed);
    let services = ["checkout", "payments", "inventory", "frontend"];
    let methods = ["GET", "POST", "PUT", "DELETE"];
    let paths = [
        "/api/v1/orders",
        "/api/v1/cart/items",
        "/api/v2/payments/authorize",
        "/healthz",
        "/api/v1/users/profile",
    ];
    let errors = [
        "connection reset by peer",
        "context deadline exceeded",
        "upstream returned 503 Service Unavailable",
        "row not found",
    ];
    let mut t: u64 = 1_714_560_000_000_000_000 + rng_seed * 1_000_000_000;
    let log_records = (0..records)
        .map(|_| {
            t += rng.next() % 5_000_000;
            let trace_id = rng.bytes(16);
            let span_id = rng.bytes(8);
            let (severity, number, body) = match rng.next() % 10 {
                0 => (
                    "ERROR",
                    17,
                    format!(
                        "request failed method={} path={}/{} status=500 error=\"{}\" attempt={} retry_in_ms={} client_ip=10.{}.{}.{}",
                        rng.pick(&methods),
                        rng.pick(&paths),
                        rng.next() % 100_000,
                        rng.pick(&errors),
                        rng.next() % 4,
                        rng.next() % 2000,
                        rng.next() % 256,
                        rng.next() % 256,
                        rng.next() % 256
                    ),
                ),
                1 | 2 => (
                    "WARN",
                    13,
                    format!(
                        "slow query detected duration_ms={}.{} table={} rows_examined={} query_id=q-{:08x} pool=primary connections_in_use={}/{}",
                        rng.next() % 5000,
                        rng.next() % 10,
                        rng.pick(&["orders", "order_items", "users", "payments"]),
                        rng.next() % 1_000_000,
                        rng.next(),
                        rng.next() % 64,
                        64
                    ),
                ),
                _ => (
                    "INFO",
                    9,
                    format!(
                        "request completed method={} path={}/{} status={} duration_ms={}.{} bytes_out={} user_id=u-{} session=s-{:012x} user_agent=\"Mozilla/5.0 (X11; Linux x86_64)\"",
                        rng.pick(&methods),
                        rng.pick(&paths),
                        rng.next() % 100_000,
                        rng.pick(&["200", "201", "204", "304", "404"]),
                        rng.next() % 900,
                        rng.next() % 10,
                        rng.next() % 65_536,
                        rng.next() % 50_000,
                        rng.next()
                    ),
                ),
            };
            LogRecord {
                time_unix_nano: t,
                observed_time_unix_nano: t + rng.next() % 1_000_000,
                severity_number: number,
                severity_text: severity.into(),
                body: Some(AnyValue {
                    value: Some(any_value::Value::StringValue(body)),
                }),
                attributes: vec![
                    string_kv("thread.name", rng.pick(&["worker-1", "worker-2", "worker-3", "main"])),
                    string_kv("code.function", rng.pick(&["handle_request", "run_query", "authorize"])),
                ],
                trace_id,
                span_id,
                flags: 1,
                ..Default::default()
            }
        })
        .collect();
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![
                    string_kv("service.name", services[(rng_seed % 4) as usize]),
                    string_kv("service.version", "1.42.0"),
                    string_kv("host.name", "ip-10-0-12-34.eu-west-1.compute.internal"),
                    string_kv("deployment.environment", "production"),
                ],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}
