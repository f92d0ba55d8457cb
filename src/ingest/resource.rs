//! The resource processor: every accepted resource carries the receiving
//! node's label, so stored data says which member took it in.
//!
//! Invariant after `label`: each resource has exactly one attribute with the
//! label key, holding the node's name as a string; other attributes keep
//! their order.

use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;

/// Sets `key = value` on a resource that may be absent (it is created).
/// An existing value for `key` is overwritten and duplicates are dropped: the
/// receiving node is authoritative for this key.
pub(crate) fn label(resource: &mut Option<Resource>, key: &str, value: &str) {
    if key.is_empty() {
        return;
    }
    let resource = resource.get_or_insert_with(Resource::default);
    let label = Some(AnyValue {
        value: Some(Value::StringValue(value.to_string())),
    });
    let mut seen = false;
    resource.attributes.retain_mut(|attribute| {
        if attribute.key != key {
            return true;
        }
        if seen {
            return false;
        }
        seen = true;
        attribute.value = label.clone();
        true
    });
    if !seen {
        resource.attributes.push(KeyValue {
            key: key.to_string(),
            value: label,
            ..Default::default()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn string_attr(key: &str, value: &str) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue {
                value: Some(Value::StringValue(value.into())),
            }),
            ..Default::default()
        }
    }

    fn values_of<'a>(resource: &'a Resource, key: &str) -> Vec<&'a Option<AnyValue>> {
        resource
            .attributes
            .iter()
            .filter(|a| a.key == key)
            .map(|a| &a.value)
            .collect()
    }

    #[test]
    fn creates_missing_resource() {
        let mut resource = None;
        label(&mut resource, "otelraft.node", "n1");
        let resource = resource.expect("resource created");
        assert_eq!(
            resource.attributes,
            vec![string_attr("otelraft.node", "n1")]
        );
    }

    #[test]
    fn appends_to_existing_attributes() {
        let mut resource = Some(Resource {
            attributes: vec![string_attr("service.name", "api")],
            ..Default::default()
        });
        label(&mut resource, "otelraft.node", "n2");
        let attributes = &resource.as_ref().unwrap().attributes;
        assert_eq!(
            attributes,
            &vec![
                string_attr("service.name", "api"),
                string_attr("otelraft.node", "n2")
            ]
        );
    }

    #[test]
    fn overwrites_existing_value_and_drops_duplicates() {
        let mut resource = Some(Resource {
            attributes: vec![
                string_attr("otelraft.node", "spoofed"),
                string_attr("service.name", "api"),
                string_attr("otelraft.node", "again"),
            ],
            ..Default::default()
        });
        label(&mut resource, "otelraft.node", "n3");
        let resource = resource.unwrap();
        assert_eq!(
            values_of(&resource, "otelraft.node"),
            vec![&string_attr("x", "n3").value]
        );
        assert_eq!(resource.attributes[0].key, "otelraft.node", "position kept");
        assert_eq!(resource.attributes.len(), 2);
    }

    #[test]
    fn empty_key_disables_the_processor() {
        let mut resource = None;
        label(&mut resource, "", "n1");
        assert!(resource.is_none());
    }
}
