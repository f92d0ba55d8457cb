use otelraft::export::loki::request::{encode_push, format_labels};
use otelraft::pb::loki::{EntryAdapter, StreamAdapter};

use super::*;

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn label_escaping_round_trips() {
    let labels = pairs(&[
        ("service_name", "we\"ird\\name\nline2"),
        ("a", "plain ünicode {}, ="),
    ]);
    let text = format_labels(&labels);
    assert_eq!(
        text,
        r#"{a="plain ünicode {}, =", service_name="we\"ird\\name\nline2"}"#
    );
    let mut parsed = parse_labels(&text).unwrap();
    parsed.sort();
    let mut want = labels.clone();
    want.sort();
    assert_eq!(parsed, want);
    assert_eq!(format_labels(&parsed), text);
}

#[test]
fn parse_labels_is_strict() {
    assert_eq!(
        parse_labels(r#" { b = "2" ,a="1"} "#).unwrap(),
        pairs(&[("b", "2"), ("a", "1")])
    );
    assert_eq!(parse_labels("{}"), Err(LabelsError::NoLabels));
    assert_eq!(
        parse_labels(r#"{a="1", a="2"}"#),
        Err(LabelsError::Duplicate("a".into()))
    );
    assert_eq!(
        parse_labels(r#"{1a="1"}"#),
        Err(LabelsError::InvalidName("1a".into()))
    );
    assert_eq!(
        parse_labels(r#"{a=""}"#),
        Err(LabelsError::EmptyValue("a".into()))
    );
    for bad in [
        "",
        "a=\"1\"",
        r#"{a="1""#,
        r#"{a="1",}"#,
        r#"{a!="1"}"#,
        r#"{a=~"1"}"#,
        r#"{a.b="1"}"#,
        r#"{a=1}"#,
        r#"{a="\x"}"#,
        "{a=\"li\nne\"}",
        r#"{a="1"} x"#,
        r#"{a="1" b="2"}"#,
    ] {
        assert!(
            matches!(parse_labels(bad), Err(LabelsError::Syntax { .. })),
            "{bad:?} gave {:?}",
            parse_labels(bad)
        );
    }
}

#[test]
fn snappy_round_trip_and_errors() {
    let push = PushRequest {
        streams: vec![StreamAdapter {
            labels: r#"{service_name="svc"}"#.to_string(),
            entries: vec![EntryAdapter {
                line: "hi".to_string(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let body = encode_push(&push).unwrap();
    // Block format: no stream identifier chunk of the framed format.
    assert_ne!(body.first(), Some(&0xff));
    assert_eq!(decode_push(&body).unwrap(), push);
    assert!(matches!(
        decode_push(b"not snappy at all"),
        Err(DecodePushError::Snappy(_))
    ));
    let not_proto = snap::raw::Encoder::new().compress_vec(&[0xff; 10]).unwrap();
    assert!(matches!(
        decode_push(&not_proto),
        Err(DecodePushError::Protobuf(_))
    ));
    let framed = {
        let mut w = snap::write::FrameEncoder::new(Vec::new());
        std::io::Write::write_all(&mut w, &push.encode_to_vec()).unwrap();
        w.into_inner().unwrap()
    };
    assert!(decode_push(&framed).is_err());
}
