//! The JSON side of the shape scan: without a schema, a looser bound.

use std::mem::size_of;

use super::{message_type, Kind, Point, Shape, ALLOCATION_OVERHEAD, CANCEL_CHECK_EVERY};
use crate::config::IngestLimits;
use crate::ingest::IngestError;
use crate::pb::log::Signal;

/// The largest struct a JSON object can become.
fn largest_struct() -> u64 {
    [
        Kind::Span,
        Kind::LogRecord,
        Kind::Point(Point::Exponential),
        Kind::Point(Point::Histogram),
        Kind::Metric,
        Kind::ScopeSpans,
    ]
    .iter()
    .map(|k| k.size())
    .max()
    .unwrap_or(0)
}

/// The JSON keys whose arrays hold records.
const RECORD_ARRAYS: [&[u8]; 3] = [b"logRecords", b"dataPoints", b"spans"];

/// `serde_json`'s own recursion limit: deeper documents fail to decode.
const MAX_JSON_DEPTH: usize = 128;

/// Reads the shape of an OTLP JSON request without a schema: every object
/// may become the largest OTLP struct, at twice its size (a `Vec`'s spare
/// capacity); every value string its bytes; every array element a `String`
/// in a `Vec`. Objects in `logRecords`, `dataPoints` and `spans` arrays are
/// the records. An upper bound, looser than the protobuf one.
pub(crate) fn scan_json(
    bytes: &[u8],
    signal: Signal,
    limits: &IngestLimits,
    cancelled: &dyn Fn() -> bool,
) -> Result<Shape, IngestError> {
    #[derive(Clone, Copy, PartialEq)]
    enum Container {
        Object,
        Array,
        Records,
    }
    let malformed = |what: &str| IngestError::Decode {
        format: "JSON",
        message_type: message_type(signal),
        error: what.to_string(),
    };
    let object_cost = 2 * largest_struct() + ALLOCATION_OVERHEAD;
    let element_cost = 2 * size_of::<String>() as u64;
    let mut stack = [Container::Object; MAX_JSON_DEPTH];
    let mut depth = 0usize;
    let mut shape = Shape::default();
    // The last string closed, when it may be the key of what follows.
    let mut last_string: Option<(usize, usize)> = None;
    let mut after_colon = false;
    let mut i = 0usize;
    while i < bytes.len() {
        if i as u64 % CANCEL_CHECK_EVERY == 0 && i > 0 && cancelled() {
            return Err(IngestError::Body("the client went away".to_string()));
        }
        let byte = bytes[i];
        match byte {
            b'{' | b'[' => {
                if depth == MAX_JSON_DEPTH {
                    return Err(malformed("nested more than 128 deep"));
                }
                let parent = depth.checked_sub(1).map(|d| stack[d]);
                let key = last_string.take().filter(|_| after_colon);
                if byte == b'{' {
                    if matches!(parent, Some(Container::Array | Container::Records)) {
                        shape.heap_bytes += object_cost;
                    }
                    if parent == Some(Container::Records) {
                        shape.records += 1;
                        if shape.records > limits.max_records as u64 {
                            return Err(IngestError::Invalid(format!(
                                "more than ingest.limits.max_records ({}) records in one request",
                                limits.max_records
                            )));
                        }
                    }
                    stack[depth] = Container::Object;
                } else {
                    shape.heap_bytes += ALLOCATION_OVERHEAD;
                    let records = key.is_some_and(|(s, e)| RECORD_ARRAYS.contains(&&bytes[s..e]));
                    stack[depth] = if records {
                        Container::Records
                    } else {
                        Container::Array
                    };
                }
                depth += 1;
                after_colon = false;
            }
            b'}' | b']' => {
                depth = depth
                    .checked_sub(1)
                    .ok_or_else(|| malformed("unbalanced brackets"))?;
                last_string = None;
            }
            b'"' => {
                let start = i + 1;
                i = start;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                if i >= bytes.len() {
                    return Err(malformed("unterminated string"));
                }
                let len = (i - start) as u64;
                // A key costs nothing; a value is decided at the next token.
                let in_array = depth > 0 && stack[depth - 1] != Container::Object;
                if in_array {
                    shape.heap_bytes += element_cost + len + ALLOCATION_OVERHEAD;
                } else if after_colon {
                    shape.heap_bytes += len + ALLOCATION_OVERHEAD;
                }
                last_string = Some((start, i));
                after_colon = false;
            }
            b':' => after_colon = true,
            b',' => {
                last_string = None;
                after_colon = false;
            }
            b' ' | b'\t' | b'\n' | b'\r' => {}
            _ => {
                // A number, true, false or null, charged at its first byte.
                let continues = i > 0
                    && matches!(bytes[i - 1], b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z' | b'.' | b'-' | b'+');
                if !continues && depth > 0 && stack[depth - 1] != Container::Object {
                    shape.heap_bytes += 8 * 2;
                }
                last_string = None;
                after_colon = false;
            }
        }
        i += 1;
    }
    if depth != 0 {
        return Err(malformed("unbalanced brackets"));
    }
    Ok(shape)
}
