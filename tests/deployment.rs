//! The deployment artefacts in `cluster/`, checked offline: every shipped
//! node config passes `otelraft check-config` without printing a secret, the
//! compose file parses with docker-compose, the Kubernetes manifests
//! validate against the API schemas (and keep the choices the bootstrap and
//! drain rely on), and the Grafana dashboard uses only metric names the
//! binary exports.
//!
//! docker-compose (Debian's package) and kubernetes-validate (PyPI) are
//! installed by `.ci/run`; a test fails, naming the tool, when one is
//! missing.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const SECRET: &str = "test-secret-value-7f3a";
const ACCESS_KEY: &str = "test-access-key";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run(cmd: &mut Command, what: &str) -> Output {
    match cmd.output() {
        Ok(out) => out,
        Err(e) => panic!("cannot run {what} ({e}); .ci/run installs it"),
    }
}

fn said(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `otelraft check-config` with only `env` in the environment.
fn check_config(file: &Path, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_otelraft"));
    cmd.arg("check-config").arg(file).env_clear();
    for (k, v) in env {
        cmd.env(k, v);
    }
    run(&mut cmd, "otelraft check-config")
}

fn yaml_documents(path: &Path) -> Vec<serde_yaml::Value> {
    let text = std::fs::read_to_string(path).expect("read manifest");
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).expect("YAML"))
        .filter(|v: &serde_yaml::Value| !v.is_null())
        .collect()
}

/// Every node config shipped in `cluster/`, as (name, TOML text).
fn shipped_configs() -> Vec<(String, String)> {
    let mut files = Vec::new();
    for dir in [
        "cluster",
        "cluster/systemd/three",
        "cluster/systemd/witness",
        "cluster/compose",
    ] {
        for n in 1..=3 {
            let rel = format!("{dir}/node{n}.toml");
            let text = std::fs::read_to_string(root().join(&rel)).expect(&rel);
            files.push((rel, text));
        }
    }
    for rel in [
        "cluster/kubernetes/base/configmap.yaml",
        "cluster/kubernetes/witness/configmap-witness.yaml",
    ] {
        for doc in yaml_documents(&root().join(rel)) {
            let Some(data) = doc["data"].as_mapping() else {
                continue;
            };
            for (key, value) in data {
                let key = key.as_str().unwrap_or_default();
                if key.ends_with(".toml") {
                    let text = value.as_str().unwrap_or_default().to_string();
                    files.push((format!("{rel}#{key}"), text));
                }
            }
        }
    }
    files
}

#[test]
fn every_shipped_node_config_passes_check_config_without_printing_secrets() {
    let configs = shipped_configs();
    assert!(configs.len() >= 16, "found only {} configs", configs.len());
    let dir = tempfile::tempdir().expect("tempdir");
    for (i, (name, text)) in configs.iter().enumerate() {
        let file = dir.path().join(format!("{i}.toml"));
        std::fs::write(&file, text).expect("write");
        let parsed: toml::Table = text.parse().unwrap_or_else(|e| panic!("{name}: {e}"));
        let has_s3 = parsed.get("archive").and_then(|a| a.get("s3")).is_some();
        // Credentials as the artefacts pass them: AWS_* (Kubernetes,
        // systemd) or OTELRAFT_ARCHIVE__S3__* (compose).
        let aws = [
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", SECRET),
        ];
        let out = check_config(&file, &aws);
        assert!(out.status.success(), "{name}: {}", said(&out));
        let printed = String::from_utf8_lossy(&out.stdout).to_string();
        let reparsed: toml::Table = printed
            .parse()
            .unwrap_or_else(|e| panic!("{name}: printed config is not TOML: {e}"));
        assert_eq!(reparsed.get("node_id"), parsed.get("node_id"), "{name}");
        if has_s3 {
            let overrides = [
                ("OTELRAFT_ARCHIVE__S3__ACCESS_KEY_ID", ACCESS_KEY),
                ("OTELRAFT_ARCHIVE__S3__SECRET_ACCESS_KEY", SECRET),
            ];
            let out = check_config(&file, &overrides);
            assert!(out.status.success(), "{name}: {}", said(&out));
            let printed = said(&out);
            assert!(!printed.contains(SECRET), "{name} printed the secret");
            assert!(printed.contains("<redacted>"), "{name}:\n{printed}");
            // And without credentials it refuses, naming the field.
            let out = check_config(&file, &[]);
            assert!(
                !out.status.success(),
                "{name} started without S3 credentials"
            );
            assert!(said(&out).contains("archive.s3"), "{name}: {}", said(&out));
        }
    }
}

#[test]
fn a_config_error_names_the_file_and_the_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("bad.toml");
    let good = std::fs::read_to_string(root().join("cluster/compose/node2.toml")).expect("read");
    std::fs::write(&file, good.replace("join = [", "join = [\"no-port\", ")).expect("write");
    let out = check_config(
        &file,
        &[("AWS_ACCESS_KEY_ID", "a"), ("AWS_SECRET_ACCESS_KEY", "b")],
    );
    assert!(!out.status.success());
    let msg = said(&out);
    assert!(msg.contains("cluster.join[0]"), "{msg}");
}

fn docker_compose(env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new("docker-compose");
    cmd.current_dir(root().join("cluster/compose"))
        .args(["-f", "docker-compose.yml", "config"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in env {
        cmd.env(k, v);
    }
    run(&mut cmd, "docker-compose (Debian package docker-compose)")
}

#[test]
fn the_compose_file_parses_and_has_no_default_secrets() {
    let secrets = [
        ("MINIO_ROOT_USER", "minio-admin"),
        ("MINIO_ROOT_PASSWORD", "minio-password-123"),
        ("OTELRAFT_S3_ACCESS_KEY_ID", ACCESS_KEY),
        ("OTELRAFT_S3_SECRET_ACCESS_KEY", SECRET),
        ("GRAFANA_ADMIN_PASSWORD", "grafana-password"),
    ];
    let out = docker_compose(&secrets);
    assert!(out.status.success(), "{}", said(&out));
    // Each secret is required: leaving any one out is refused by name.
    for (i, (name, _)) in secrets.iter().enumerate() {
        let mut partial = secrets.to_vec();
        partial.remove(i);
        let out = docker_compose(&partial);
        assert!(!out.status.success(), "{name} has a default");
        assert!(said(&out).contains(name), "{name}: {}", said(&out));
    }
    // The resolved file (anchors merged, variables substituted).
    let compose: serde_yaml::Value =
        serde_yaml::from_slice(&out.stdout).expect("docker-compose config prints YAML");
    let services = compose["services"].as_mapping().expect("services");
    for n in 1..=3 {
        let s = &services[&serde_yaml::Value::from(format!("otelraft-{n}"))];
        let grace = s["stop_grace_period"].as_str().unwrap_or_default();
        assert_eq!(grace, "45s", "otelraft-{n} must outlast the 30 s drain");
    }
    let prometheus =
        serde_yaml::to_string(&services[&serde_yaml::Value::from("prometheus")]).expect("yaml");
    assert!(prometheus.contains("--web.enable-remote-write-receiver"));
}

#[test]
fn kubernetes_manifests_validate_against_the_api_schemas() {
    let manifests = [
        "cluster/kubernetes/base/configmap.yaml",
        "cluster/kubernetes/base/services.yaml",
        "cluster/kubernetes/base/statefulset.yaml",
        "cluster/kubernetes/base/pdb.yaml",
        "cluster/kubernetes/witness/configmap-witness.yaml",
    ];
    let validate = |files: &[PathBuf]| {
        run(
            Command::new("kubernetes-validate")
                .args(["--strict", "-k", "1.27.0"])
                .args(files),
            "kubernetes-validate (pip install kubernetes-validate)",
        )
    };
    let paths: Vec<PathBuf> = manifests.iter().map(|m| root().join(m)).collect();
    let out = validate(&paths);
    let said = said(&out);
    // An unknown kind or apiVersion is only a WARN with exit 0.
    assert!(out.status.success() && !said.contains("WARN"), "{said}");
    assert_eq!(said.matches("passed").count(), 6, "{said}");

    // The validator does catch a misspelt field (so the check can fail).
    let dir = tempfile::tempdir().expect("tempdir");
    let broken = dir.path().join("services.yaml");
    let services = std::fs::read_to_string(&paths[1]).expect("read");
    assert!(services.contains("publishNotReadyAddresses"));
    std::fs::write(
        &broken,
        services.replace("publishNotReadyAddresses", "publishNotReadyAddress"),
    )
    .expect("write");
    assert!(!validate(&[broken]).status.success());
}

#[test]
fn the_statefulset_keeps_what_bootstrap_and_drain_rely_on() {
    let dir = root().join("cluster/kubernetes/base");
    let sts = &yaml_documents(&dir.join("statefulset.yaml"))[0];
    let spec = &sts["spec"];
    // OrderedReady would deadlock a full restart: readiness needs a quorum.
    assert_eq!(spec["podManagementPolicy"], "Parallel");
    assert!(spec["volumeClaimTemplates"]
        .as_sequence()
        .is_some_and(|v| !v.is_empty()));
    let pod = &spec["template"]["spec"];
    // Service links would inject OTELRAFT_* variables that the config
    // loader rejects as unknown fields.
    assert_eq!(pod["enableServiceLinks"], false);
    let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap_or(0);
    assert!(
        grace > 30,
        "grace period {grace} s is below the drain timeout"
    );
    let c = &pod["containers"][0];
    let args: Vec<&str> = c["args"]
        .as_sequence()
        .into_iter()
        .flatten()
        .filter_map(|a| a.as_str())
        .collect();
    assert_eq!(
        args,
        ["serve", "--config", "/etc/otelraft/$(POD_NAME).toml"]
    );
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/health/ready");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/health/live");
    let pre_stop: Vec<&str> = c["lifecycle"]["preStop"]["exec"]["command"]
        .as_sequence()
        .into_iter()
        .flatten()
        .filter_map(|a| a.as_str())
        .collect();
    assert!(pre_stop.contains(&"drain"), "preStop: {pre_stop:?}");

    let labels = &spec["template"]["metadata"]["labels"];
    let selector = spec["selector"]["matchLabels"]
        .as_mapping()
        .expect("selector");
    for (k, v) in selector {
        assert_eq!(
            &labels[k], v,
            "selector {k:?} does not match the pod labels"
        );
    }
    let services = yaml_documents(&dir.join("services.yaml"));
    let peers = services
        .iter()
        .find(|s| s["spec"]["clusterIP"] == "None")
        .expect("headless service");
    assert_eq!(spec["serviceName"], peers["metadata"]["name"]);
    assert_eq!(peers["spec"]["publishNotReadyAddresses"], true);
    let pdb = &yaml_documents(&dir.join("pdb.yaml"))[0];
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);

    // Exactly one pod may bootstrap, and it lists only itself.
    let configs: Vec<(String, toml::Table)> = shipped_configs()
        .into_iter()
        .filter(|(name, _)| name.starts_with("cluster/kubernetes/base"))
        .map(|(name, text)| (name, text.parse().expect("TOML")))
        .collect();
    assert_eq!(configs.len(), 3);
    let bootstrappers: Vec<&(String, toml::Table)> = configs
        .iter()
        .filter(|(_, c)| c["cluster"].get("bootstrap").and_then(|b| b.as_bool()) == Some(true))
        .collect();
    assert_eq!(bootstrappers.len(), 1);
    let members = bootstrappers[0].1["cluster"]["initial_members"]
        .as_array()
        .expect("initial_members");
    assert_eq!(members.len(), 1);
    for (name, c) in &configs {
        assert!(
            c["cluster"].get("join").is_some(),
            "{name} has no join list"
        );
    }
}

/// Names of every sample the binary can expose: gauges as registered,
/// counters with `_total`, histograms with `_bucket`, `_sum`, `_count`.
fn exported_names() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in otelraft::metrics::Metrics::new().render().lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut parts = rest.split_whitespace();
        let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
            continue;
        };
        match kind {
            "counter" => {
                names.insert(format!("{name}_total"));
            }
            "histogram" => {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{suffix}"));
                }
            }
            _ => {
                names.insert(name.to_string());
            }
        }
    }
    names
}

fn collect_queries(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr" | "query" | "definition", serde_json::Value::String(s)) => {
                        out.push(s.clone())
                    }
                    ("query", serde_json::Value::Object(q)) => {
                        if let Some(s) = q.get("query").and_then(|s| s.as_str()) {
                            out.push(s.to_string());
                        }
                    }
                    _ => collect_queries(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|i| collect_queries(i, out)),
        _ => {}
    }
}

fn metric_tokens(query: &str) -> Vec<String> {
    let bytes = query.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while let Some(at) = query[i..].find("otelraft_") {
        let start = i + at;
        let preceded =
            start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        if !preceded {
            tokens.push(query[start..end].to_string());
        }
        i = end;
    }
    tokens
}

#[test]
fn the_dashboard_uses_only_metric_names_the_binary_exports() {
    let path = root().join("cluster/grafana/otelraft.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("read")).expect("JSON");
    let mut queries = Vec::new();
    collect_queries(&dashboard, &mut queries);
    let used: BTreeSet<String> = queries.iter().flat_map(|q| metric_tokens(q)).collect();
    let exported = exported_names();
    // Label names such as otelraft_sink (the export marker) never appear in
    // a metric position of these queries; everything found must exist.
    let unknown: Vec<&String> = used.difference(&exported).collect();
    assert!(
        unknown.is_empty(),
        "the dashboard queries metrics the binary does not export: {unknown:?}"
    );
    // The panels the deployment issue asks for.
    for needed in [
        "otelraft_ingest_records_accepted_total",
        "otelraft_ingest_requests_refused_total",
        "otelraft_ingest_ack_seconds_bucket",
        "otelraft_raft_replication_lag_entries",
        "otelraft_export_lag_entries",
        "otelraft_export_dead_letters",
        "otelraft_archive_lag_entries",
        "otelraft_storage_fsync_seconds_bucket",
    ] {
        assert!(used.contains(needed), "no panel uses {needed}");
    }
    assert_eq!(dashboard["uid"], "otelraft");
    // The check itself can fail: a misspelt name is caught.
    assert!(!exported.contains("otelraft_ingest_record_accepted_total"));
}
