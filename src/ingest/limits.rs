//! The structure limits of `[ingest.limits]`: names, attributes and buckets
//! a request may carry. Each check names the item by its OTLP JSON path and
//! quotes no more than a few hundred bytes of it.

use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;

use crate::config::IngestLimits;
use crate::text::quote;

/// A name of at most `max_name_bytes`.
pub(crate) fn name(name: &str, l: &IngestLimits, at: &dyn Fn() -> String) -> Result<(), String> {
    if name.len() > l.max_name_bytes {
        return Err(format!(
            "{}.name ({:?}): {} bytes, over ingest.limits.max_name_bytes ({})",
            at(),
            quote(name),
            name.len(),
            l.max_name_bytes
        ));
    }
    Ok(())
}

/// At most `max_attributes` attributes, each key and value within its limit.
pub(crate) fn attributes(
    attributes: &[KeyValue],
    l: &IngestLimits,
    at: &dyn Fn() -> String,
) -> Result<(), String> {
    if attributes.len() > l.max_attributes {
        return Err(format!(
            "{}.attributes: {} attributes, over ingest.limits.max_attributes ({})",
            at(),
            attributes.len(),
            l.max_attributes
        ));
    }
    for (i, kv) in attributes.iter().enumerate() {
        if kv.key.len() > l.max_attribute_key_bytes {
            return Err(format!(
                "{}.attributes[{i}].key ({:?}): {} bytes, over ingest.limits.max_attribute_key_bytes ({})",
                at(),
                quote(&kv.key),
                kv.key.len(),
                l.max_attribute_key_bytes
            ));
        }
        let value = kv.value.as_ref().map_or(0, |v| v.encoded_len());
        if value > l.max_attribute_value_bytes {
            return Err(format!(
                "{}.attributes[{i}] ({:?}): value of {value} bytes, over ingest.limits.max_attribute_value_bytes ({})",
                at(),
                quote(&kv.key),
                l.max_attribute_value_bytes
            ));
        }
    }
    Ok(())
}

/// A resource's attributes.
pub(crate) fn resource(
    resource: Option<&Resource>,
    l: &IngestLimits,
    at: &dyn Fn() -> String,
) -> Result<(), String> {
    match resource {
        Some(r) => attributes(&r.attributes, l, &|| format!("{}.resource", at())),
        None => Ok(()),
    }
}

/// A scope's name and attributes.
pub(crate) fn scope(
    scope: Option<&InstrumentationScope>,
    l: &IngestLimits,
    at: &dyn Fn() -> String,
) -> Result<(), String> {
    let Some(scope) = scope else {
        return Ok(());
    };
    let at = || format!("{}.scope", at());
    name(&scope.name, l, &at)?;
    attributes(&scope.attributes, l, &at)
}

/// At most `max_buckets` buckets in one data point.
pub(crate) fn buckets(
    count: usize,
    l: &IngestLimits,
    at: &dyn Fn() -> String,
) -> Result<(), String> {
    if count > l.max_buckets {
        return Err(format!(
            "{}: {count} buckets, over ingest.limits.max_buckets ({})",
            at(),
            l.max_buckets
        ));
    }
    Ok(())
}
