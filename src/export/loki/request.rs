//! OTLP logs to a Loki push request (helper-owned; interface only).
