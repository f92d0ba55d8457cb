//! Prometheus metric and label naming for OTLP (helper-owned).
pub fn is_valid_metric_name(_s: &str) -> bool { true }
pub fn is_valid_label_name(_s: &str) -> bool { true }
