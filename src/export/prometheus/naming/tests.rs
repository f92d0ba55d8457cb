use super::*;

#[test]
fn invalid_metric_characters_become_single_underscores() {
    assert_eq!(
        metric_name("http.server..active-requests", "", NameKind::Gauge),
        "http_server_active_requests"
    );
    assert_eq!(metric_name("a__b", "", NameKind::Gauge), "a_b");
    assert_eq!(metric_name("ns:metric", "", NameKind::Gauge), "ns:metric");
    assert_eq!(metric_name("café", "", NameKind::Gauge), "caf_");
}

#[test]
fn leading_digit_gets_underscore_prefix() {
    assert_eq!(metric_name("2xx.count", "", NameKind::Gauge), "_2xx_count");
    assert!(is_valid_metric_name(&metric_name("9", "", NameKind::Gauge)));
}

#[test]
fn empty_metric_name_stays_empty_and_is_invalid() {
    let name = metric_name("", "s", NameKind::Counter);
    assert_eq!(name, "");
    assert!(!is_valid_metric_name(&name));
}

#[test]
fn ucum_units_become_words() {
    let cases = [
        ("s", "seconds"),
        ("ms", "milliseconds"),
        ("us", "microseconds"),
        ("ns", "nanoseconds"),
        ("min", "minutes"),
        ("h", "hours"),
        ("d", "days"),
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
    for (unit, word) in cases {
        assert_eq!(
            metric_name("x", unit, NameKind::Gauge),
            format!("x_{word}"),
            "unit {unit}"
        );
    }
}

#[test]
fn per_units_and_annotations() {
    assert_eq!(
        metric_name("net.io", "By/s", NameKind::Gauge),
        "net_io_bytes_per_second"
    );
    assert_eq!(
        metric_name("speed", "m/h", NameKind::Gauge),
        "speed_meters_per_hour"
    );
    assert_eq!(
        metric_name("rate", "{packet}/mo", NameKind::Gauge),
        "rate_per_month"
    );
    assert_eq!(metric_name("rate", "1/w", NameKind::Gauge), "rate_per_week");
    assert_eq!(
        metric_name("rate", "By/y", NameKind::Gauge),
        "rate_bytes_per_year"
    );
    assert_eq!(
        metric_name("rate", "By/d", NameKind::Gauge),
        "rate_bytes_per_day"
    );
    assert_eq!(
        metric_name("rate", "By/m", NameKind::Gauge),
        "rate_bytes_per_minute"
    );
    assert_eq!(
        metric_name("packets", "{packet}", NameKind::Gauge),
        "packets"
    );
    assert_eq!(
        metric_name("unclosed", "{oops", NameKind::Gauge),
        "unclosed"
    );
}

#[test]
fn unknown_units_are_sanitised_words() {
    assert_eq!(
        metric_name("load", "widgets", NameKind::Gauge),
        "load_widgets"
    );
    assert_eq!(
        metric_name("load", "kilo widgets.", NameKind::Gauge),
        "load_kilo_widgets"
    );
}

#[test]
fn dimensionless_one_is_ratio_only_on_gauges() {
    assert_eq!(
        metric_name("cpu.utilization", "1", NameKind::Gauge),
        "cpu_utilization_ratio"
    );
    assert_eq!(metric_name("cpu.ratio", "1", NameKind::Gauge), "cpu_ratio");
    assert_eq!(metric_name("queue", "1", NameKind::UpDownCounter), "queue");
    assert_eq!(metric_name("hits", "1", NameKind::Counter), "hits_total");
    assert_eq!(metric_name("spread", "1", NameKind::Histogram), "spread");
}

#[test]
fn unit_already_in_name_is_not_repeated() {
    assert_eq!(
        metric_name("rpc.duration_seconds", "s", NameKind::Histogram),
        "rpc_duration_seconds"
    );
    assert_eq!(
        metric_name("seconds.idle", "s", NameKind::Gauge),
        "seconds_idle"
    );
    assert_eq!(
        metric_name("io_bytes_per_second", "By/s", NameKind::Gauge),
        "io_bytes_per_second"
    );
    // A word that merely starts with the unit does not count.
    assert_eq!(
        metric_name("secondsx", "s", NameKind::Gauge),
        "secondsx_seconds"
    );
}

#[test]
fn counters_end_in_total_once_and_after_the_unit() {
    assert_eq!(
        metric_name("http.requests", "{request}", NameKind::Counter),
        "http_requests_total"
    );
    assert_eq!(
        metric_name("http.requests_total", "", NameKind::Counter),
        "http_requests_total"
    );
    assert_eq!(
        metric_name("cpu.time", "s", NameKind::Counter),
        "cpu_time_seconds_total"
    );
    assert_eq!(
        metric_name("cpu.time_total", "s", NameKind::Counter),
        "cpu_time_seconds_total"
    );
    assert_eq!(
        metric_name("cpu_seconds_total", "s", NameKind::Counter),
        "cpu_seconds_total"
    );
    assert_eq!(metric_name("total", "", NameKind::Counter), "total_total");
    assert_eq!(
        metric_name("queue.size", "", NameKind::UpDownCounter),
        "queue_size"
    );
    assert_eq!(
        metric_name("dur", "ms", NameKind::Summary),
        "dur_milliseconds"
    );
}

#[test]
fn trailing_invalid_characters_do_not_double_underscores() {
    assert_eq!(
        metric_name("latency.", "ms", NameKind::Histogram),
        "latency_milliseconds"
    );
    assert_eq!(metric_name("...", "", NameKind::Gauge), "_");
}

#[test]
fn label_names_follow_the_spec() {
    assert_eq!(label_name("http.request.method"), "http_request_method");
    assert_eq!(label_name("a..b"), "a_b");
    assert_eq!(label_name("_private"), "_private");
    assert_eq!(label_name("__name__"), "_name_");
    assert_eq!(label_name("1st"), "key_1st");
    assert_eq!(label_name("ns:key"), "ns_key");
    assert_eq!(label_name(""), "");
}

#[test]
fn validity_checks() {
    assert!(is_valid_metric_name("a:b_c9"));
    assert!(is_valid_metric_name("_x"));
    assert!(!is_valid_metric_name("9x"));
    assert!(!is_valid_metric_name("a-b"));
    assert!(!is_valid_metric_name(""));
    assert!(is_valid_label_name("_x9"));
    assert!(is_valid_label_name("__name__"));
    assert!(!is_valid_label_name("a:b"));
    assert!(!is_valid_label_name("1a"));
    assert!(!is_valid_label_name(""));
}

#[test]
fn format_float_matches_go() {
    assert_eq!(format_float(1.0), "1");
    assert_eq!(format_float(0.1), "0.1");
    assert_eq!(format_float(1e21), "1000000000000000000000");
    assert_eq!(format_float(-2.5e-7), "-0.00000025");
    assert_eq!(format_float(f64::INFINITY), "+Inf");
    assert_eq!(format_float(f64::NEG_INFINITY), "-Inf");
    assert_eq!(format_float(f64::NAN), "NaN");
}

#[test]
fn base64_pads_like_the_standard_alphabet() {
    assert_eq!(base64(b""), "");
    assert_eq!(base64(b"f"), "Zg==");
    assert_eq!(base64(b"fo"), "Zm8=");
    assert_eq!(base64(b"foo"), "Zm9v");
    assert_eq!(base64(&[0xfb, 0xff]), "+/8=");
}

#[test]
fn label_values_of_scalars_and_non_finite_doubles() {
    use opentelemetry_proto::tonic::common::v1::ArrayValue;
    let value = |v| Some(AnyValue { value: Some(v) });
    assert_eq!(label_value(None), "");
    assert_eq!(label_value(Some(&AnyValue { value: None })), "");
    assert_eq!(
        label_value(value(any_value::Value::DoubleValue(2.0)).as_ref()),
        "2"
    );
    assert_eq!(
        label_value(value(any_value::Value::DoubleValue(f64::INFINITY)).as_ref()),
        "+Inf"
    );
    let array = any_value::Value::ArrayValue(ArrayValue {
        values: vec![
            AnyValue {
                value: Some(any_value::Value::DoubleValue(f64::NAN)),
            },
            AnyValue {
                value: Some(any_value::Value::DoubleValue(0.25)),
            },
            AnyValue { value: None },
            AnyValue {
                value: Some(any_value::Value::BytesValue(vec![1, 2])),
            },
        ],
    });
    assert_eq!(
        label_value(value(array).as_ref()),
        r#"["NaN",0.25,null,"AQI="]"#
    );
}
