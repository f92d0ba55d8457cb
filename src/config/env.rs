//! `OTELRAFT_*` overrides: the TOML path in upper case, `__` between table
//! levels.

use super::redact::is_secret_name;
use super::ConfigError;

/// Sets `path` (an env suffix such as `LISTEN__OTLP_GRPC`) in the table.
pub(super) fn apply_override(
    table: &mut toml::Table,
    path: &str,
    raw: &str,
) -> Result<(), ConfigError> {
    let parts: Vec<String> = path.split("__").map(|p| p.to_ascii_lowercase()).collect();
    let field = parts.join(".");
    let (last, parents) = match parts.split_last() {
        Some(split) if !split.0.is_empty() => split,
        _ => return Err(ConfigError::field(&field, "empty override name")),
    };
    let mut cursor = table;
    for p in parents {
        let entry = cursor
            .entry(p.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        cursor = match entry {
            toml::Value::Table(t) => t,
            _ => return Err(ConfigError::field(&field, format!("`{p}` is not a table"))),
        };
    }
    // Secrets and header values stay strings: an all-digit token must not
    // turn into a number, fail to deserialize and be echoed in the error.
    let value = if is_secret_name(last) || parents.iter().any(|p| p == "headers") {
        toml::Value::String(raw.to_string())
    } else {
        parse_scalar(raw)
    };
    cursor.insert(last.clone(), value);
    Ok(())
}

fn parse_scalar(raw: &str) -> toml::Value {
    if let Ok(i) = raw.parse::<i64>() {
        return toml::Value::Integer(i);
    }
    if let Ok(b) = raw.parse::<bool>() {
        return toml::Value::Boolean(b);
    }
    if let Ok(f) = raw.parse::<f64>() {
        return toml::Value::Float(f);
    }
    toml::Value::String(raw.to_string())
}
