//! The effective configuration as printed by `check-config`, with every
//! secret replaced by `<redacted>`.

use super::NodeConfig;

impl NodeConfig {
    /// The effective configuration as TOML with every secret replaced by
    /// `<redacted>`, for `check-config`.
    pub fn to_redacted_toml(&self) -> String {
        let mut value = match toml::Value::try_from(self) {
            Ok(v) => v,
            Err(e) => return format!("# cannot render: {e}"),
        };
        redact(&mut value, "");
        toml::to_string_pretty(&value).unwrap_or_else(|e| format!("# cannot render: {e}"))
    }
}

/// Marks values whose key names a credential. Header values are redacted
/// when the header name does (`Authorization`, `X-Api-Key`, ...).
fn redact(value: &mut toml::Value, path: &str) {
    let toml::Value::Table(table) = value else {
        return;
    };
    for (key, v) in table.iter_mut() {
        let child = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}.{key}")
        };
        if let toml::Value::Table(_) = v {
            redact(v, &child);
            continue;
        }
        let in_headers = path.ends_with(".headers");
        let secret = is_secret_name(key) || (in_headers && is_secret_header(key));
        if secret && v.as_str().is_some_and(|s| !s.is_empty()) {
            *v = toml::Value::String("<redacted>".to_string());
        }
    }
}

pub(super) fn is_secret_name(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    ["secret", "password", "token"]
        .iter()
        .any(|w| k.contains(w))
        && !k.ends_with("_file")
}

fn is_secret_header(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n == "authorization"
        || n == "cookie"
        || ["token", "key", "secret", "password", "auth"]
            .iter()
            .any(|w| n.contains(w))
}
