//! From HTTP body bytes to an OTLP export request: media type, content
//! coding, bounded decompression and protobuf/JSON decoding.
//!
//! Invariants: nothing here allocates more than the configured limit (plus
//! one read chunk) for a single request, whatever the compression ratio;
//! and nothing is allocated before the request's reservation holds it.

use std::io::Read;

use axum::body::Bytes;
use flate2::read::MultiGzDecoder;

use super::admission::Reservation;
use super::request::OtlpRequest;
use super::shape::{scan_json, scan_protobuf};
use super::IngestError;
use crate::config::IngestLimits;

/// The two OTLP/HTTP encodings. The response uses the request's encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    /// `application/x-protobuf`: binary OTLP.
    Protobuf,
    /// `application/json`: OTLP JSON (lowerCamelCase, hex ids, int64 strings).
    Json,
}

impl Format {
    /// Picks the encoding from a `Content-Type` value; parameters such as
    /// `charset` are ignored, anything but the two OTLP media types is refused.
    pub(crate) fn from_content_type(value: Option<&str>) -> Result<Format, IngestError> {
        let Some(value) = value else {
            return Err(IngestError::UnsupportedMediaType(
                "missing Content-Type; use application/x-protobuf or application/json".to_string(),
            ));
        };
        let essence = value.split(';').next().unwrap_or("").trim();
        if essence.eq_ignore_ascii_case("application/x-protobuf") {
            Ok(Format::Protobuf)
        } else if essence.eq_ignore_ascii_case("application/json") {
            Ok(Format::Json)
        } else {
            Err(IngestError::UnsupportedMediaType(format!(
                "Content-Type {value:?} is not supported; use application/x-protobuf or application/json"
            )))
        }
    }

    /// The `Content-Type` to answer with.
    pub(crate) fn content_type(self) -> &'static str {
        match self {
            Format::Protobuf => "application/x-protobuf",
            Format::Json => "application/json",
        }
    }
}

/// The content codings OTLP/HTTP clients use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Coding {
    /// No `Content-Encoding`, or `identity`.
    Identity,
    /// `Content-Encoding: gzip`.
    Gzip,
}

impl Coding {
    /// Picks the coding from a `Content-Encoding` value. Unknown codings are
    /// refused as an unsupported media type (RFC 9110 section 15.5.16 allows
    /// 415 for an unacceptable content coding).
    pub(crate) fn from_content_encoding(value: Option<&str>) -> Result<Coding, IngestError> {
        let token = value.map(str::trim).unwrap_or("");
        if token.is_empty() || token.eq_ignore_ascii_case("identity") {
            Ok(Coding::Identity)
        } else if token.eq_ignore_ascii_case("gzip") || token.eq_ignore_ascii_case("x-gzip") {
            Ok(Coding::Gzip)
        } else {
            Err(IngestError::UnsupportedMediaType(format!(
                "Content-Encoding {token:?} is not supported; use gzip or none"
            )))
        }
    }
}

/// Read size for decompression; also the most the output may overshoot
/// before the limit check refuses it.
const CHUNK: usize = 64 * 1024;

/// Decompresses a gzip body (one or more members) into at most `limit` bytes,
/// reserving the output in `reservation` before it is allocated.
///
/// The output buffer grows by doubling but is capped at `limit`, and each
/// chunk is checked before it is appended, so a gzip bomb is refused after
/// allocating at most `limit` bytes of output.
pub(crate) fn gunzip_bounded(
    compressed: &[u8],
    limit: usize,
    message_type: &'static str,
    reservation: &mut Reservation,
    cancelled: &dyn Fn() -> bool,
) -> Result<Vec<u8>, IngestError> {
    let mut decoder = MultiGzDecoder::new(compressed);
    let initial = compressed.len().saturating_mul(4).min(limit);
    reservation.grow((initial + CHUNK) as u64, "decompressed size")?;
    let mut out: Vec<u8> = Vec::with_capacity(initial);
    let mut chunk = vec![0u8; CHUNK];
    loop {
        if cancelled() {
            return Err(IngestError::Body("the client went away".to_string()));
        }
        let n = match decoder.read(&mut chunk) {
            Ok(0) => return Ok(out),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(IngestError::Decode {
                    format: "gzip",
                    message_type,
                    error: e.to_string(),
                });
            }
        };
        let needed = out.len() + n;
        if needed > limit {
            return Err(IngestError::TooLarge {
                stage: "decompressed body",
                limit,
            });
        }
        if needed > out.capacity() {
            let target = out.capacity().saturating_mul(2).max(needed).min(limit);
            reservation.grow((target - out.capacity()) as u64, "decompressed size")?;
            out.reserve_exact(target - out.len());
        }
        out.extend_from_slice(&chunk[..n]);
    }
}

/// Decodes an uncompressed body as `T` in the given encoding. Errors name the
/// encoding and the message type so the client can tell what failed.
pub(crate) fn decode_message<T: OtlpRequest>(
    bytes: &[u8],
    format: Format,
) -> Result<T, IngestError> {
    match format {
        Format::Protobuf => T::decode(bytes).map_err(|e| IngestError::Decode {
            format: "protobuf",
            message_type: T::TYPE_NAME,
            error: e.to_string(),
        }),
        Format::Json => serde_json::from_slice(bytes).map_err(|e| IngestError::Decode {
            format: "JSON",
            message_type: T::TYPE_NAME,
            error: e.to_string(),
        }),
    }
}

/// What a decode is allowed: the size limit, the structure limits, its
/// share of the decode budget, and a way to learn that its client left.
pub(crate) struct DecodeLimits<'a> {
    /// `ingest.max_request_bytes`: the body after decompression.
    pub max_bytes: usize,
    /// `[ingest.limits]`.
    pub limits: &'a IngestLimits,
    /// The request's share of the decode budget; holds the body already.
    pub reservation: &'a mut Reservation,
    /// `true` once nobody waits for the answer.
    pub cancelled: &'a dyn Fn() -> bool,
}

/// The whole decode step: undo the content coding within `max_bytes`, read
/// the request's shape off the wire and reserve its decoded size, then
/// decode. CPU-bound; callers run it on the blocking pool. On return the
/// reservation holds only the decoded request.
pub(crate) fn decode_body<T: OtlpRequest>(
    body: Bytes,
    format: Format,
    coding: Coding,
    at: DecodeLimits<'_>,
) -> Result<T, IngestError> {
    let plain: Bytes = match coding {
        Coding::Identity => {
            if body.len() > at.max_bytes {
                return Err(IngestError::TooLarge {
                    stage: "body",
                    limit: at.max_bytes,
                });
            }
            body
        }
        Coding::Gzip => {
            let out = gunzip_bounded(
                &body,
                at.max_bytes,
                T::TYPE_NAME,
                at.reservation,
                at.cancelled,
            )?;
            drop(body);
            at.reservation.shrink_to(out.capacity() as u64);
            Bytes::from(out)
        }
    };
    let shape = match format {
        Format::Protobuf => scan_protobuf(&plain, T::SIGNAL, at.limits, at.cancelled)?,
        Format::Json => scan_json(&plain, T::SIGNAL, at.limits, at.cancelled)?,
    };
    at.reservation.grow(shape.heap_bytes, "decoded size")?;
    let request = decode_message::<T>(&plain, format)?;
    drop(plain);
    at.reservation.shrink_to(shape.heap_bytes);
    Ok(request)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use flate2::write::GzEncoder;
    use flate2::Compression;

    use super::*;

    fn reservation() -> Reservation {
        super::super::admission::Admission::new(1 << 30, 1, std::time::Duration::from_secs(1))
            .reservation()
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = GzEncoder::new(Vec::new(), Compression::default());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn content_type_parsing() {
        assert_eq!(
            Format::from_content_type(Some("application/x-protobuf")).unwrap(),
            Format::Protobuf
        );
        assert_eq!(
            Format::from_content_type(Some("Application/JSON; charset=utf-8")).unwrap(),
            Format::Json
        );
        assert!(matches!(
            Format::from_content_type(Some("text/plain")),
            Err(IngestError::UnsupportedMediaType(_))
        ));
        assert!(matches!(
            Format::from_content_type(None),
            Err(IngestError::UnsupportedMediaType(_))
        ));
    }

    #[test]
    fn content_encoding_parsing() {
        assert_eq!(
            Coding::from_content_encoding(None).unwrap(),
            Coding::Identity
        );
        assert_eq!(
            Coding::from_content_encoding(Some("GZIP")).unwrap(),
            Coding::Gzip
        );
        assert!(matches!(
            Coding::from_content_encoding(Some("br")),
            Err(IngestError::UnsupportedMediaType(m)) if m.contains("br")
        ));
    }

    #[test]
    fn gunzip_within_limit_round_trips() {
        let data = vec![7u8; 300_000];
        assert_eq!(
            gunzip_bounded(&gzip(&data), data.len(), "X", &mut reservation(), &|| false).unwrap(),
            data
        );
    }

    #[test]
    fn gunzip_bomb_is_refused_without_growing_past_limit() {
        let bomb = gzip(&vec![0u8; 50 << 20]);
        assert!(
            bomb.len() < 100_000,
            "bomb should be small, got {}",
            bomb.len()
        );
        let err = gunzip_bounded(&bomb, 1 << 20, "X", &mut reservation(), &|| false).unwrap_err();
        assert!(
            matches!(err, IngestError::TooLarge { stage: "decompressed body", limit } if limit == 1 << 20)
        );
    }

    #[test]
    fn gunzip_garbage_is_a_decode_error() {
        let err = gunzip_bounded(
            b"not gzip at all",
            1024,
            "ExportLogsServiceRequest",
            &mut reservation(),
            &|| false,
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("gzip decode of ExportLogsServiceRequest failed"),
            "{err}"
        );
    }
}
