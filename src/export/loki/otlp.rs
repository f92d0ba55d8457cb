//! OTLP logs re-batched for Loki 3's OTLP endpoint (helper-owned).
