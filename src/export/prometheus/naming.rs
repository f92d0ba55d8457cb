//! Prometheus metric and label naming for OTLP (helper-owned), and the
//! text of label values.
//!
//! Follows the OpenTelemetry "Prometheus and OpenMetrics Compatibility"
//! specification, section "OTLP Metric points to Prometheus":
//!
//! - metric names: characters outside `[a-zA-Z0-9_:]` become `_`, runs of
//!   `_` collapse to one, a leading digit gets a `_` prefix;
//! - the UCUM unit becomes a word suffix (`ms` → `milliseconds`, `By/s` →
//!   `bytes_per_second`, `{packet}` → nothing, `1` → `ratio` on gauges)
//!   unless the name already contains that unit;
//! - monotonic cumulative sums end in `_total`, after the unit;
//! - label names: characters outside `[a-zA-Z0-9_]` become `_`, runs of `_`
//!   collapse to one (so no sanitised name can start with the reserved
//!   `__`), a leading digit gets a `key_` prefix;
//! - label values: attribute values as text, floats as Go prints them.

use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue};

/// Which Prometheus type an OTLP metric becomes; the type decides the
/// type-specific suffix and whether the unit `1` reads as `ratio`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameKind {
    /// A monotonic cumulative sum: a Prometheus counter, named `…_total`.
    Counter,
    /// An OTLP gauge: a Prometheus gauge; the unit `1` becomes `ratio`.
    Gauge,
    /// A non-monotonic cumulative sum: exported as a Prometheus gauge, but
    /// not an OTLP gauge, so the unit `1` is dropped rather than `ratio`.
    UpDownCounter,
    /// A histogram; `_bucket`, `_sum` and `_count` are added by the mapper.
    Histogram,
    /// A summary; `_sum` and `_count` are added by the mapper.
    Summary,
}

/// UCUM units (the part before any `/`) and their Prometheus words.
const MAIN_UNITS: &[(&str, &str)] = &[
    ("d", "days"),
    ("h", "hours"),
    ("min", "minutes"),
    ("s", "seconds"),
    ("ms", "milliseconds"),
    ("us", "microseconds"),
    ("ns", "nanoseconds"),
    ("By", "bytes"),
    ("KiBy", "kibibytes"),
    ("MiBy", "mebibytes"),
    ("GiBy", "gibibytes"),
    ("TiBy", "tebibytes"),
    ("KBy", "kilobytes"),
    ("MBy", "megabytes"),
    ("GBy", "gigabytes"),
    ("TBy", "terabytes"),
    ("m", "meters"),
    ("V", "volts"),
    ("A", "amperes"),
    ("J", "joules"),
    ("W", "watts"),
    ("g", "grams"),
    ("Cel", "celsius"),
    ("Hz", "hertz"),
    ("%", "percent"),
];

/// UCUM units after a `/` and their singular Prometheus words.
const PER_UNITS: &[(&str, &str)] = &[
    ("s", "second"),
    ("m", "minute"),
    ("h", "hour"),
    ("d", "day"),
    ("w", "week"),
    ("mo", "month"),
    ("y", "year"),
];

/// The Prometheus name for an OTLP metric: sanitised, with the unit suffix
/// and (for counters) `_total`. Returns an empty string when nothing of the
/// OTLP name survives, so the caller can refuse the metric instead of
/// exporting a name made only of suffixes.
pub fn metric_name(otlp_name: &str, unit: &str, kind: NameKind) -> String {
    let mut base = collapse_underscores(&replace_invalid(otlp_name, is_metric_char));
    if base.is_empty() {
        return base;
    }
    if base.starts_with(|c: char| c.is_ascii_digit()) {
        base.insert(0, '_');
    }
    if kind == NameKind::Counter {
        base = strip_total(base);
    }
    if let Some(suffix) = unit_suffix(unit, kind) {
        if !contains_words(&base, &suffix) {
            base.push('_');
            base.push_str(&suffix);
        }
    }
    if kind == NameKind::Counter {
        base.push_str("_total");
    }
    collapse_underscores(&base)
}

/// The Prometheus label name for an OTLP attribute key. An empty key stays
/// empty (and so fails [`is_valid_label_name`]).
pub fn label_name(key: &str) -> String {
    let name = collapse_underscores(&replace_invalid(key, is_label_char));
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        format!("key_{name}")
    } else {
        name
    }
}

/// Whether `name` matches `[a-zA-Z_:][a-zA-Z0-9_:]*`, the metric-name rule
/// of remote write 1.0; used to refuse names that sanitising cannot save.
pub fn is_valid_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(first) if !first.is_ascii_digit() && is_metric_char(first) => {
            chars.all(is_metric_char)
        }
        _ => false,
    }
}

/// Whether `name` matches `[a-zA-Z_][a-zA-Z0-9_]*`, the label-name rule of
/// remote write 1.0. Syntax only: the reserved `__` prefix is accepted, as
/// the mapper itself adds `__name__`.
pub fn is_valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(first) if !first.is_ascii_digit() && is_label_char(first) => chars.all(is_label_char),
        _ => false,
    }
}

/// A float as Go's `strconv.FormatFloat(v, 'f', -1, 64)` prints it (the
/// shortest exact decimal, `+Inf`, `-Inf`, `NaN`), so `le`, `quantile` and
/// double attribute values read as Prometheus and the Collector write them.
pub fn format_float(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_string()
    } else if value == f64::INFINITY {
        "+Inf".to_string()
    } else if value == f64::NEG_INFINITY {
        "-Inf".to_string()
    } else {
        format!("{value}")
    }
}

/// An OTLP attribute value as label text, following the spec's rule for
/// non-string attributes: strings as-is, scalars as text, bytes as base64,
/// arrays and key-value lists as compact JSON; an empty value is `""`.
pub fn label_value(value: Option<&AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        None | Some(any_value::Value::StringValueStrindex(_)) => String::new(),
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => format_float(*d),
        Some(any_value::Value::BytesValue(bytes)) => base64(bytes),
        Some(nested) => serde_json::to_string(&json_value(Some(nested))).unwrap_or_default(),
    }
}

/// An attribute value as a JSON value, for arrays and key-value lists.
fn json_value(value: Option<&any_value::Value>) -> serde_json::Value {
    use serde_json::Value as Json;
    match value {
        None | Some(any_value::Value::StringValueStrindex(_)) => Json::Null,
        Some(any_value::Value::StringValue(s)) => Json::String(s.clone()),
        Some(any_value::Value::BoolValue(b)) => Json::Bool(*b),
        Some(any_value::Value::IntValue(i)) => Json::from(*i),
        Some(any_value::Value::DoubleValue(d)) => serde_json::Number::from_f64(*d)
            .map_or_else(|| Json::String(format_float(*d)), Json::Number),
        Some(any_value::Value::BytesValue(bytes)) => Json::String(base64(bytes)),
        Some(any_value::Value::ArrayValue(array)) => Json::Array(
            array
                .values
                .iter()
                .map(|v| json_value(v.value.as_ref()))
                .collect(),
        ),
        Some(any_value::Value::KvlistValue(list)) => Json::Object(
            list.values
                .iter()
                .map(|kv| {
                    (
                        kv.key.clone(),
                        json_value(kv.value.as_ref().and_then(|v| v.value.as_ref())),
                    )
                })
                .collect(),
        ),
    }
}

/// Standard padded base64, as OTLP/JSON encodes bytes.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut text = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let group = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                text.push(char::from(
                    ALPHABET[((group >> (18 - 6 * i)) & 0x3f) as usize],
                ));
            } else {
                text.push('=');
            }
        }
    }
    text
}

/// The unit word(s) to append for `unit`, or `None` when the unit adds
/// nothing (empty, only `{annotations}`, or a dimensionless `1`).
fn unit_suffix(unit: &str, kind: NameKind) -> Option<String> {
    let unit = strip_annotations(unit);
    let unit = unit.trim();
    if unit == "1" && kind == NameKind::Gauge {
        return Some("ratio".to_string());
    }
    let (main, per) = match unit.split_once('/') {
        Some((main, per)) => (main.trim(), Some(per.trim())),
        None => (unit, None),
    };
    let main = unit_word(main, MAIN_UNITS);
    let per = per.and_then(|per| unit_word(per, PER_UNITS));
    match (main, per) {
        (Some(main), Some(per)) => Some(format!("{main}_per_{per}")),
        (None, Some(per)) => Some(format!("per_{per}")),
        (main, None) => main,
    }
}

/// One side of a unit as a word: a known UCUM unit's name, otherwise the
/// unit itself sanitised; `None` for an empty or dimensionless `1` side.
fn unit_word(unit: &str, table: &[(&str, &str)]) -> Option<String> {
    if unit.is_empty() || unit == "1" {
        return None;
    }
    if let Some((_, word)) = table.iter().find(|(code, _)| *code == unit) {
        return Some((*word).to_string());
    }
    let word = collapse_underscores(&replace_invalid(unit, is_metric_char));
    let word = word.trim_matches('_');
    (!word.is_empty()).then(|| word.to_string())
}

/// `unit` without any `{…}` annotation (an unclosed `{` drops the rest).
fn strip_annotations(unit: &str) -> String {
    let mut kept = String::with_capacity(unit.len());
    let mut depth = 0usize;
    for c in unit.chars() {
        match c {
            '{' => depth += 1,
            '}' if depth > 0 => depth -= 1,
            _ if depth == 0 => kept.push(c),
            _ => {}
        }
    }
    kept
}

/// `name` without a trailing `_total`, so the unit can go before it.
fn strip_total(name: String) -> String {
    match name.strip_suffix("_total") {
        Some(stem) if !stem.is_empty() => stem.to_string(),
        _ => name,
    }
}

/// Whether the `_`-separated words of `words` occur as whole words in
/// `name` ("the metric name already contains the unit").
fn contains_words(name: &str, words: &str) -> bool {
    format!("_{name}_").contains(&format!("_{words}_"))
}

/// Replaces every character that `allowed` rejects with `_`.
fn replace_invalid(text: &str, allowed: fn(char) -> bool) -> String {
    text.chars()
        .map(|c| if allowed(c) { c } else { '_' })
        .collect()
}

/// Replaces each run of `_` with a single `_`.
fn collapse_underscores(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if !(c == '_' && out.ends_with('_')) {
            out.push(c);
        }
    }
    out
}

/// Characters allowed anywhere in a metric name (digits not first).
fn is_metric_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// Characters allowed anywhere in a label name (digits not first).
fn is_label_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

#[cfg(test)]
mod tests;
