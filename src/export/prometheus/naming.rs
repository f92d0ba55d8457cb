//! Prometheus metric and label naming for OTLP (helper-owned).
