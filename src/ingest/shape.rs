//! The shape of an encoded OTLP request, read off the wire before anything
//! is materialised: how many records it holds, how deeply its values nest,
//! and how many heap bytes decoding it will allocate.
//!
//! Why: a few kilobytes of gzip can expand to millions of empty spans, each
//! two bytes on the wire and 264 bytes once decoded. The size limits bound
//! bytes; only the shape bounds what those bytes become. The receiver
//! reserves [`Shape::heap_bytes`] from its decode budget and checks the
//! structure limits before `prost` allocates anything.
//!
//! Invariant: `heap_bytes` is at least what `prost` allocates for the same
//! bytes. Every message counts its struct in its parent's `Vec` at the
//! capacity `Vec`'s doubling reaches, every string and byte field counts its
//! length, every packed scalar counts 8 bytes at its `Vec`'s capacity, and
//! every allocation counts [`ALLOCATION_OVERHEAD`]. The scan allocates
//! nothing itself and recurses at most `MAX_DEPTH` messages deep.
//!
//! The table of fields mirrors the OTLP protos (`opentelemetry-proto`);
//! a test decodes a request with every message kind, each carrying 4 KiB
//! strings, and checks the estimate against what a counting allocator saw,
//! so a field missing from the table shows as a shortfall.

use std::mem::size_of;

use opentelemetry_proto::tonic::common::v1::{AnyValue, EntityRef, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::exponential_histogram_data_point::Buckets;
use opentelemetry_proto::tonic::metrics::v1::summary_data_point::ValueAtQuantile;
use opentelemetry_proto::tonic::metrics::v1::{
    Exemplar, ExponentialHistogramDataPoint, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, SummaryDataPoint,
};
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

use super::IngestError;
use crate::config::IngestLimits;
use crate::pb::log::Signal;

/// What one heap allocation costs beyond its bytes (allocator header and
/// rounding), counted once per `Vec`, `String` and byte field.
pub(crate) const ALLOCATION_OVERHEAD: u64 = 16;

/// `prost`'s own recursion limit: deeper requests fail to decode anyway.
const MAX_DEPTH: u32 = 100;

/// How often (in fields) a long scan asks whether its client is still there.
const CANCEL_CHECK_EVERY: u64 = 1 << 16;

/// What the scan found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Shape {
    /// Log records, data points or spans.
    pub records: u64,
    /// Deepest nesting of `AnyValue`s (0: no values).
    pub value_depth: u32,
    /// Upper bound of the heap bytes decoding allocates.
    pub heap_bytes: u64,
}

/// The messages of the three OTLP export requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Request(Signal),
    ResourceLogs,
    ScopeLogs,
    LogRecord,
    ResourceMetrics,
    ScopeMetrics,
    Metric,
    /// Gauge, Sum, Histogram, ExponentialHistogram and Summary: each has its
    /// points in field 1, and only scalars besides.
    Points(Point),
    /// One data point of the four kinds: a record each.
    Point(Point),
    Exemplar,
    Buckets,
    Quantile,
    ResourceSpans,
    ScopeSpans,
    Span,
    Event,
    Link,
    Status,
    Resource,
    Scope,
    EntityRef,
    KeyValue,
    AnyValue,
    ArrayValue,
    KeyValueList,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Point {
    Number,
    Histogram,
    Exponential,
    Summary,
}

/// How a field is stored once decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    /// A nested message: inline (`Option<T>` or a oneof) or in a `Vec<T>`.
    Message { kind: Kind, repeated: bool },
    /// A `String` or `Vec<u8>`: alone, or in a `Vec<String>`.
    Bytes { repeated: bool },
    /// A `Vec<u64>` or `Vec<f64>`, packed or not.
    Scalars { varint: bool },
    /// A scalar stored inline, or a field `prost` skips.
    Inline,
}

const fn message(kind: Kind) -> Field {
    Field::Message {
        kind,
        repeated: false,
    }
}

const fn many(kind: Kind) -> Field {
    Field::Message {
        kind,
        repeated: true,
    }
}

const BYTES: Field = Field::Bytes { repeated: false };

impl Kind {
    /// The field `number` of this message, as `opentelemetry-proto` decodes it.
    fn field(self, number: u32) -> Field {
        use Kind as K;
        match (self, number) {
            (K::Request(Signal::Logs), 1) => many(K::ResourceLogs),
            (K::Request(Signal::Metrics), 1) => many(K::ResourceMetrics),
            (K::Request(Signal::Traces), 1) => many(K::ResourceSpans),
            (K::ResourceLogs | K::ResourceMetrics | K::ResourceSpans, 1) => message(K::Resource),
            (K::ResourceLogs, 2) => many(K::ScopeLogs),
            (K::ResourceMetrics, 2) => many(K::ScopeMetrics),
            (K::ResourceSpans, 2) => many(K::ScopeSpans),
            (K::ScopeLogs | K::ScopeMetrics | K::ScopeSpans, 1) => message(K::Scope),
            (K::ScopeLogs, 2) => many(K::LogRecord),
            (K::ScopeMetrics, 2) => many(K::Metric),
            (K::ScopeSpans, 2) => many(K::Span),
            (
                K::ResourceLogs
                | K::ResourceMetrics
                | K::ResourceSpans
                | K::ScopeLogs
                | K::ScopeMetrics
                | K::ScopeSpans,
                3,
            ) => BYTES,
            (K::LogRecord, 3 | 9 | 10 | 12) => BYTES,
            (K::LogRecord, 5) => message(K::AnyValue),
            (K::LogRecord, 6) => many(K::KeyValue),
            (K::Metric, 1..=3) => BYTES,
            (K::Metric, 5 | 7) => message(K::Points(Point::Number)),
            (K::Metric, 9) => message(K::Points(Point::Histogram)),
            (K::Metric, 10) => message(K::Points(Point::Exponential)),
            (K::Metric, 11) => message(K::Points(Point::Summary)),
            (K::Metric, 12) => many(K::KeyValue),
            (K::Points(point), 1) => many(point.kind()),
            (K::Exemplar, 4 | 5) => BYTES,
            (K::Exemplar, 7) => many(K::KeyValue),
            (K::Buckets, 2) => Field::Scalars { varint: true },
            (K::Span, 1..=5) => BYTES,
            (K::Span, 9) => many(K::KeyValue),
            (K::Span, 11) => many(K::Event),
            (K::Span, 13) => many(K::Link),
            (K::Span, 15) => message(K::Status),
            (K::Event, 2) => BYTES,
            (K::Event, 3) => many(K::KeyValue),
            (K::Link, 1..=3) => BYTES,
            (K::Link, 4) => many(K::KeyValue),
            (K::Status, 2) => BYTES,
            (K::Resource, 1) | (K::Scope, 3) | (K::KeyValueList, 1) => many(K::KeyValue),
            (K::Resource, 3) => many(K::EntityRef),
            (K::Scope, 1 | 2) => BYTES,
            (K::EntityRef, 1 | 2) => BYTES,
            (K::EntityRef, 3 | 4) => Field::Bytes { repeated: true },
            (K::KeyValue, 1) => BYTES,
            (K::KeyValue, 2) | (K::ArrayValue, 1) => Field::Message {
                kind: K::AnyValue,
                repeated: self == K::ArrayValue,
            },
            (K::AnyValue, 1 | 7) => BYTES,
            (K::AnyValue, 5) => message(K::ArrayValue),
            (K::AnyValue, 6) => message(K::KeyValueList),
            _ => self.point_field(number),
        }
    }

    /// The fields of the four data point messages.
    fn point_field(self, number: u32) -> Field {
        use Kind as K;
        match (self, number) {
            (K::Points(_), _) => Field::Inline,
            (K::Point(Point::Number), 5) => many(K::Exemplar),
            (K::Point(Point::Number), 7) => many(K::KeyValue),
            (K::Point(Point::Histogram), 6) => Field::Scalars { varint: false },
            (K::Point(Point::Histogram), 7) => Field::Scalars { varint: false },
            (K::Point(Point::Histogram), 8) => many(K::Exemplar),
            (K::Point(Point::Histogram), 9) => many(K::KeyValue),
            (K::Point(Point::Exponential), 1) => many(K::KeyValue),
            (K::Point(Point::Exponential), 8 | 9) => message(K::Buckets),
            (K::Point(Point::Exponential), 11) => many(K::Exemplar),
            (K::Point(Point::Summary), 6) => many(K::Quantile),
            (K::Point(Point::Summary), 7) => many(K::KeyValue),
            _ => Field::Inline,
        }
    }
}

impl Point {
    fn kind(self) -> Kind {
        Kind::Point(self)
    }
}

impl Kind {
    /// Bytes of the decoded struct, as it sits in its parent's `Vec`.
    fn size(self) -> u64 {
        let bytes = match self {
            Kind::Request(_) | Kind::Points(_) | Kind::Status => 0,
            Kind::ResourceLogs => size_of::<ResourceLogs>(),
            Kind::ScopeLogs => size_of::<ScopeLogs>(),
            Kind::LogRecord => size_of::<LogRecord>(),
            Kind::ResourceMetrics => size_of::<ResourceMetrics>(),
            Kind::ScopeMetrics => size_of::<ScopeMetrics>(),
            Kind::Metric => size_of::<Metric>(),
            Kind::Point(Point::Number) => size_of::<NumberDataPoint>(),
            Kind::Point(Point::Histogram) => size_of::<HistogramDataPoint>(),
            Kind::Point(Point::Exponential) => size_of::<ExponentialHistogramDataPoint>(),
            Kind::Point(Point::Summary) => size_of::<SummaryDataPoint>(),
            Kind::Exemplar => size_of::<Exemplar>(),
            Kind::Buckets => size_of::<Buckets>(),
            Kind::Quantile => size_of::<ValueAtQuantile>(),
            Kind::ResourceSpans => size_of::<ResourceSpans>(),
            Kind::ScopeSpans => size_of::<ScopeSpans>(),
            Kind::Span => size_of::<Span>(),
            Kind::Event => size_of::<Event>(),
            Kind::Link => size_of::<Link>(),
            Kind::Resource => size_of::<opentelemetry_proto::tonic::resource::v1::Resource>(),
            Kind::Scope => size_of::<InstrumentationScope>(),
            Kind::EntityRef => size_of::<EntityRef>(),
            Kind::KeyValue => size_of::<KeyValue>(),
            Kind::AnyValue => size_of::<AnyValue>(),
            Kind::ArrayValue | Kind::KeyValueList => 0,
        };
        bytes as u64
    }

    fn is_record(self) -> bool {
        matches!(self, Kind::LogRecord | Kind::Span | Kind::Point(_))
    }
}

/// The capacity a `Vec` reaches after `n` pushes: 4, then doubling.
fn capacity(n: u64) -> u64 {
    n.next_power_of_two().max(4)
}

/// Reads the shape of an encoded `signal` request, refusing it as soon as
/// it breaks `limits` (records, value depth) or is not protobuf at all.
/// `cancelled` is asked now and then; `true` stops the scan.
pub(crate) fn scan_protobuf(
    bytes: &[u8],
    signal: Signal,
    limits: &IngestLimits,
    cancelled: &dyn Fn() -> bool,
) -> Result<Shape, IngestError> {
    let mut scan = Scan {
        limits,
        cancelled,
        fields: 0,
        shape: Shape::default(),
        message_type: message_type(signal),
    };
    let heap = scan.message(bytes, Kind::Request(signal), 1, 0)?;
    scan.shape.heap_bytes = heap;
    Ok(scan.shape)
}

fn message_type(signal: Signal) -> &'static str {
    match signal {
        Signal::Logs => "ExportLogsServiceRequest",
        Signal::Metrics => "ExportMetricsServiceRequest",
        Signal::Traces | Signal::Unspecified => "ExportTraceServiceRequest",
    }
}

struct Scan<'a> {
    limits: &'a IngestLimits,
    cancelled: &'a dyn Fn() -> bool,
    fields: u64,
    shape: Shape,
    message_type: &'static str,
}

/// Repeated fields of one message are counted per field number; OTLP's
/// repeated fields all have numbers below this.
const COUNTED_FIELDS: usize = 16;

impl Scan<'_> {
    fn malformed(&self, what: &str) -> IngestError {
        IngestError::Decode {
            format: "protobuf",
            message_type: self.message_type,
            error: what.to_string(),
        }
    }

    /// Scans one message of `kind`; returns the heap bytes its fields
    /// allocate (its own struct is counted by its parent).
    fn message(
        &mut self,
        mut bytes: &[u8],
        kind: Kind,
        depth: u32,
        value_depth: u32,
    ) -> Result<u64, IngestError> {
        if depth > MAX_DEPTH {
            return Err(self.malformed("messages nest more than 100 deep"));
        }
        if kind.is_record() {
            self.shape.records += 1;
            if self.shape.records > self.limits.max_records as u64 {
                return Err(IngestError::Invalid(format!(
                    "more than ingest.limits.max_records ({}) records in one request",
                    self.limits.max_records
                )));
            }
        }
        let value_depth = value_depth + u32::from(kind == Kind::AnyValue);
        if value_depth > self.limits.max_value_depth {
            return Err(IngestError::Invalid(format!(
                "values nest more than ingest.limits.max_value_depth ({}) deep",
                self.limits.max_value_depth
            )));
        }
        self.shape.value_depth = self.shape.value_depth.max(value_depth);
        // Per repeated field: elements seen, and the bytes of one element.
        let mut counts = [(0u64, 0u64); COUNTED_FIELDS];
        let mut heap = 0u64;
        while !bytes.is_empty() {
            self.fields += 1;
            if self.fields % CANCEL_CHECK_EVERY == 0 && (self.cancelled)() {
                return Err(IngestError::Body("the client went away".to_string()));
            }
            let tag = self.varint(&mut bytes)?;
            let number = u32::try_from(tag >> 3).map_err(|_| self.malformed("bad field number"))?;
            if number == 0 {
                return Err(self.malformed("field number 0"));
            }
            let wire = tag & 7;
            let field = kind.field(number);
            let slot = (number as usize) < COUNTED_FIELDS;
            match wire {
                0 => {
                    self.varint(&mut bytes)?;
                    if let (Field::Scalars { .. }, true) = (field, slot) {
                        counts[number as usize] = (counts[number as usize].0 + 1, 8);
                    }
                }
                1 | 5 => {
                    self.fixed(&mut bytes, wire)?;
                    if let (Field::Scalars { .. }, true) = (field, slot) {
                        counts[number as usize] = (counts[number as usize].0 + 1, 8);
                    }
                }
                2 => {
                    let body = self.delimited(&mut bytes)?;
                    heap += self.length_delimited(
                        body,
                        field,
                        number,
                        &mut counts,
                        depth,
                        value_depth,
                    )?;
                }
                3 => {
                    bytes = self.skip_group(bytes, number, depth + 1)?;
                }
                _ => return Err(self.malformed("invalid wire type")),
            }
        }
        for (elements, element_bytes) in counts {
            if elements > 0 {
                heap += capacity(elements) * element_bytes + ALLOCATION_OVERHEAD;
            }
        }
        Ok(heap)
    }

    /// One length-delimited field: a nested message, bytes, or packed
    /// scalars.
    fn length_delimited(
        &mut self,
        body: &[u8],
        field: Field,
        number: u32,
        counts: &mut [(u64, u64); COUNTED_FIELDS],
        depth: u32,
        value_depth: u32,
    ) -> Result<u64, IngestError> {
        let slot = (number as usize) < COUNTED_FIELDS;
        let count = |counts: &mut [(u64, u64); COUNTED_FIELDS], n: u64, element: u64| {
            if slot {
                let entry = &mut counts[number as usize];
                *entry = (entry.0 + n, element);
            }
        };
        match field {
            Field::Message { kind, repeated } => {
                if repeated {
                    count(counts, 1, kind.size());
                }
                self.message(body, kind, depth + 1, value_depth)
            }
            Field::Bytes { repeated } => {
                if repeated {
                    count(counts, 1, size_of::<String>() as u64);
                }
                Ok(if body.is_empty() {
                    0
                } else {
                    body.len() as u64 + ALLOCATION_OVERHEAD
                })
            }
            Field::Scalars { varint } => {
                let n = if varint {
                    body.iter().filter(|b| **b < 0x80).count() as u64
                } else {
                    body.len() as u64 / 8
                };
                count(counts, n, 8);
                Ok(0)
            }
            Field::Inline => Ok(0),
        }
    }

    /// Skips a (deprecated) group `prost` would skip, up to its end tag.
    fn skip_group<'b>(
        &mut self,
        mut bytes: &'b [u8],
        number: u32,
        depth: u32,
    ) -> Result<&'b [u8], IngestError> {
        if depth > MAX_DEPTH {
            return Err(self.malformed("groups nest more than 100 deep"));
        }
        loop {
            if bytes.is_empty() {
                return Err(self.malformed("group without its end"));
            }
            let tag = self.varint(&mut bytes)?;
            let inner = (tag >> 3) as u32;
            match tag & 7 {
                0 => {
                    self.varint(&mut bytes)?;
                }
                wire @ (1 | 5) => self.fixed(&mut bytes, wire)?,
                2 => {
                    self.delimited(&mut bytes)?;
                }
                3 => bytes = self.skip_group(bytes, inner, depth + 1)?,
                4 if inner == number => return Ok(bytes),
                _ => return Err(self.malformed("invalid wire type in a group")),
            }
        }
    }

    /// Skips a fixed64 (wire type 1) or fixed32 (5) value.
    fn fixed(&self, bytes: &mut &[u8], wire: u64) -> Result<(), IngestError> {
        let width = if wire == 1 { 8 } else { 4 };
        if bytes.len() < width {
            return Err(self.malformed("truncated fixed-width field"));
        }
        *bytes = &bytes[width..];
        Ok(())
    }

    /// Takes a length-delimited value off the front of `bytes`.
    fn delimited<'b>(&self, bytes: &mut &'b [u8]) -> Result<&'b [u8], IngestError> {
        let len = self.varint(bytes)?;
        let len = usize::try_from(len)
            .ok()
            .filter(|&n| n <= bytes.len())
            .ok_or_else(|| self.malformed("length past the end of the buffer"))?;
        let (body, rest) = bytes.split_at(len);
        *bytes = rest;
        Ok(body)
    }

    fn varint(&self, bytes: &mut &[u8]) -> Result<u64, IngestError> {
        let mut value = 0u64;
        for (i, byte) in bytes.iter().take(10).enumerate() {
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                *bytes = &bytes[i + 1..];
                return Ok(value);
            }
        }
        Err(self.malformed("bad varint"))
    }
}

mod json;
pub(crate) use json::scan_json;

#[cfg(test)]
mod tests;
