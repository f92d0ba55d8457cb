//! Parsing, overrides, validation and redaction of node configs.

use super::*;

const MINIMAL: &str = r#"
node_id = 1
data_dir = "/tmp/x"
[listen]
otlp_grpc = "127.0.0.1:4317"
otlp_http = "127.0.0.1:4318"
peer = "127.0.0.1:4400"
admin = "127.0.0.1:4480"
"#;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn minimal_file_gets_defaults() {
    let c = NodeConfig::from_toml_and_env(MINIMAL, "t", env(&[])).expect("valid");
    assert_eq!(c.name, "node-1");
    assert_eq!(c.advertise.peer, "127.0.0.1:4400");
    assert_eq!(c.ingest.max_request_bytes, 16 << 20);
}

#[test]
fn env_overrides_nested_fields() {
    let c = NodeConfig::from_toml_and_env(
        MINIMAL,
        "t",
        env(&[
            ("OTELRAFT_NODE_ID", "7"),
            ("OTELRAFT_INGEST__MAX_REQUEST_BYTES", "1048576"),
            ("OTELRAFT_NAME", "edge"),
        ]),
    )
    .expect("valid");
    assert_eq!(c.node_id, 7);
    assert_eq!(c.ingest.max_request_bytes, 1 << 20);
    assert_eq!(c.name, "edge");
}

#[test]
fn secret_overrides_stay_strings_and_the_admin_token_is_not_a_field() {
    let c = NodeConfig::from_toml_and_env(
        MINIMAL,
        "t",
        env(&[
            ("OTELRAFT_TLS__ENABLED", "true"),
            ("OTELRAFT_TLS__CA_FILE", "/nonexistent/ca.pem"),
            ("OTELRAFT_TLS__CERT_FILE", "/nonexistent/node.pem"),
            ("OTELRAFT_TLS__KEY_FILE", "/nonexistent/node.key"),
            ("OTELRAFT_AUTH__ENABLED", "true"),
            ("OTELRAFT_AUTH__INGEST_TOKENS", "1234567890123456"),
            ("OTELRAFT_AUTH__ADMIN_TOKENS", "99999999999999999999"),
            ("OTELRAFT_ADMIN_TOKEN", "for-the-cli-not-serve"),
        ]),
    )
    .expect("valid");
    assert_eq!(c.auth.ingest_tokens, "1234567890123456");
    assert_eq!(c.auth.admin_tokens, "99999999999999999999");
    let shown = c.to_redacted_toml();
    assert!(!shown.contains("1234567890123456"), "{shown}");
}

#[test]
fn example_configs_in_cluster_dir_are_valid() {
    for (name, text) in [
        ("node1", include_str!("../../cluster/node1.toml")),
        ("node2", include_str!("../../cluster/node2.toml")),
        ("node3", include_str!("../../cluster/node3.toml")),
    ] {
        let c = NodeConfig::from_toml_and_env(text, name, env(&[]))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(c.name, name.replace("node", "node-"));
    }
}

#[test]
fn errors_name_the_field() {
    let err = NodeConfig::from_toml_and_env(
        MINIMAL,
        "t",
        env(&[("OTELRAFT_RAFT__HEARTBEAT_INTERVAL_MS", "abc")]),
    )
    .expect_err("bad type");
    assert!(
        err.to_string().contains("raft.heartbeat_interval_ms"),
        "{err}"
    );
    let err = NodeConfig::from_toml_and_env(&format!("{MINIMAL}\nbogus = 1\n"), "t", env(&[]))
        .expect_err("unknown");
    assert!(err.to_string().contains("bogus"), "{err}");
    let err = NodeConfig::from_toml_and_env(MINIMAL, "t", env(&[("OTELRAFT_NODE_ID", "0")]))
        .expect_err("zero id");
    assert!(err.to_string().contains("node_id"), "{err}");
    let err = NodeConfig::from_toml_and_env(
        MINIMAL,
        "t",
        env(&[("OTELRAFT_CLUSTER__BOOTSTRAP", "true")]),
    )
    .expect_err("bootstrap without members");
    assert!(err.to_string().contains("cluster.initial_members"), "{err}");
    let wildcard = MINIMAL.replace("127.0.0.1:4400", "0.0.0.0:4400");
    let err =
        NodeConfig::from_toml_and_env(&wildcard, "t", env(&[])).expect_err("wildcard advertise");
    assert!(err.to_string().contains("advertise.peer"), "{err}");
    let err = NodeConfig::from_toml_and_env(
        &format!("{MINIMAL}\n[cluster]\njoin = [\"otelraft-0\"]\n"),
        "t",
        env(&[]),
    )
    .expect_err("join without a port");
    assert!(err.to_string().contains("cluster.join[0]"), "{err}");
}

#[test]
fn printed_config_hides_secrets_but_keeps_the_rest() {
    let text = format!(
        "{MINIMAL}\n[sinks.loki]\nkind = \"loki\"\nendpoint = \"http://127.0.0.1:3100/loki/api/v1/push\"\n\
         [sinks.loki.headers]\nAuthorization = \"Bearer hunter2-token\"\nX-Scope-OrgID = \"tenant-a\"\n\
         [archive.s3]\nendpoint = \"http://127.0.0.1:9000\"\nbucket = \"b\"\nallow_http = true\n\
         access_key_id = \"AKIDEXAMPLE\"\nsecret_access_key = \"s3cr3t-value\"\n"
    );
    let c = NodeConfig::from_toml_and_env(&text, "t", env(&[])).expect("valid");
    let printed = c.to_redacted_toml();
    for secret in ["hunter2-token", "s3cr3t-value"] {
        assert!(!printed.contains(secret), "{secret} leaked:\n{printed}");
    }
    for kept in [
        "AKIDEXAMPLE",
        "tenant-a",
        "http://127.0.0.1:9000",
        "<redacted>",
    ] {
        assert!(printed.contains(kept), "{kept} missing:\n{printed}");
    }
    // What is printed is itself a valid config once the secret is set.
    let reparsed = NodeConfig::from_toml_and_env(&printed, "printed", env(&[]))
        .expect("printed config parses");
    assert_eq!(reparsed.node_id, c.node_id);
}

/// Validation reads no file: a config whose TLS and token files are missing
/// parses and validates (tools that need no TLS run with it), and loading
/// its material is what refuses it, naming the field.
#[test]
fn validation_reads_no_file_and_loading_the_material_names_the_missing_one() {
    let text = format!(
        "{MINIMAL}\n[tls]\nenabled = true\nca_file = \"/nonexistent/ca.pem\"\ncert_file = \"/nonexistent/node.pem\"\nkey_file = \"/nonexistent/node.key\"\n"
    );
    let c = NodeConfig::from_toml_and_env(&text, "t", env(&[])).expect("validates without files");
    let err = Material::load(&c).err().expect("the files are missing");
    assert!(err.to_string().contains("tls."), "{err}");

    // [auth] needs [tls]; the token files are read after the TLS files.
    let text = format!(
        "{MINIMAL}\n[tls]\nenabled = true\nca_file = \"/nonexistent/ca.pem\"\ncert_file = \"/nonexistent/node.pem\"\nkey_file = \"/nonexistent/node.key\"\n[auth]\nenabled = true\ningest_tokens_file = \"/nonexistent/tokens\"\n"
    );
    let c = NodeConfig::from_toml_and_env(&text, "t", env(&[])).expect("validates without files");
    let err = crate::auth::Tokens::load(&c.auth)
        .map(|_| ())
        .map_err(ConfigError::from)
        .expect_err("the token file is missing");
    assert!(err.to_string().contains("auth.ingest_tokens_file"), "{err}");

    let plain = NodeConfig::from_toml_and_env(MINIMAL, "t", env(&[])).expect("valid");
    let m = Material::load(&plain).expect("nothing to read");
    assert!(m.server_tls.is_none() && m.client_tls.is_none() && m.tokens.is_none());
}

#[test]
fn an_append_budget_the_message_cap_cannot_carry_is_refused_by_name() {
    let err = NodeConfig::from_toml_and_env(
        MINIMAL,
        "t",
        env(&[("OTELRAFT_PEER__MAX_APPEND_BYTES", "2000000000")]),
    )
    .expect_err("over the message cap");
    assert!(err.to_string().contains("peer.max_append_bytes"), "{err}");
    let err = NodeConfig::from_toml_and_env(
        MINIMAL,
        "t",
        env(&[("OTELRAFT_PEER__MAX_APPEND_BYTES", "0")]),
    )
    .expect_err("zero");
    assert!(err.to_string().contains("peer.max_append_bytes"), "{err}");
    let c = NodeConfig::from_toml_and_env(MINIMAL, "t", env(&[])).expect("defaults");
    assert_eq!(c.peer.max_append_bytes, 32 << 20);
}

#[test]
fn auth_without_tls_is_refused_because_the_peer_port_would_stay_open() {
    let err = NodeConfig::from_toml_and_env(
        &format!(
            "{MINIMAL}\n[auth]\nenabled = true\ningest_tokens = \"a\"\nadmin_tokens = \"b\"\n"
        ),
        "t",
        env(&[]),
    )
    .expect_err("auth without tls");
    assert!(err.to_string().contains("auth.enabled"), "{err}");
    assert!(err.to_string().contains("tls.enabled"), "{err}");
}

#[test]
fn a_decode_budget_that_cannot_hold_the_largest_request_is_refused_by_name() {
    for (key, value, field) in [
        (
            "OTELRAFT_INGEST__DECODE_MEMORY_BYTES",
            "1000000",
            "ingest.decode_memory_bytes",
        ),
        (
            "OTELRAFT_INGEST__DECODE_CONCURRENCY",
            "0",
            "ingest.decode_concurrency",
        ),
        (
            "OTELRAFT_INGEST__DECODE_WAIT_MS",
            "0",
            "ingest.decode_wait_ms",
        ),
        (
            "OTELRAFT_INGEST__LIMITS__MAX_RECORDS",
            "0",
            "ingest.limits.max_records",
        ),
        (
            "OTELRAFT_INGEST__LIMITS__MAX_VALUE_DEPTH",
            "0",
            "ingest.limits.max_value_depth",
        ),
        (
            "OTELRAFT_CONNECTIONS__MEMBER_RESERVE",
            "5000",
            "connections.member_reserve",
        ),
        (
            "OTELRAFT_CONNECTIONS__HEADER_READ_TIMEOUT_MS",
            "0",
            "connections.header_read_timeout_ms",
        ),
        (
            "OTELRAFT_PEER__MAX_SNAPSHOT_BYTES",
            "0",
            "peer.max_snapshot_bytes",
        ),
    ] {
        let err =
            NodeConfig::from_toml_and_env(MINIMAL, "t", env(&[(key, value)])).expect_err("refused");
        assert!(err.to_string().contains(field), "{key}: {err}");
    }
    let c = NodeConfig::from_toml_and_env(MINIMAL, "t", env(&[])).expect("defaults");
    assert_eq!(c.ingest.decode_memory_bytes, 192 << 20);
    assert_eq!(c.ingest.limits.max_records, 100_000);
}

#[test]
fn initial_members_with_more_witnesses_than_data_members_are_refused_by_name() {
    let members = |roles: &[&str]| {
        let mut toml = format!("{MINIMAL}\n[cluster]\nbootstrap = true\n");
        for (i, role) in roles.iter().enumerate() {
            let id = i + 1;
            toml.push_str(&format!(
                "[[cluster.initial_members]]\nid = {id}\nrole = \"{role}\"\npeer_addr = \"127.0.0.{id}:4400\"\nadmin_addr = \"127.0.0.{id}:4480\"\n"
            ));
        }
        NodeConfig::from_toml_and_env(&toml, "t", env(&[]))
    };
    let err = members(&["data", "witness", "witness"]).expect_err("1 data, 2 witnesses");
    assert!(err.to_string().contains("cluster.initial_members"), "{err}");
    assert!(
        err.to_string().contains("2 witnesses for 1 data members"),
        "{err}"
    );
    members(&["data", "data", "witness"]).expect("2 data, 1 witness");
}
