//! TLS and mutual TLS on real processes: a TLS cluster takes the
//! OpenTelemetry SDK's data over TLS; plaintext clients are refused on every
//! port; a peer from another CA, or with a certificate that names a node
//! outside the membership or another node, cannot disturb the cluster; and
//! start-up refuses TLS files that do not fit, naming the field.

use std::path::Path;
use std::time::Duration;
use testkit::cluster;
use testkit::loki;

use otelraft::pb::peer::peer_client::PeerClient;
use testkit::cluster::{
    binary, post_logs, run_cli, tls_section, wait_until, Options, TestCluster, TestNode,
    TEST_ADMIN_TOKEN, TEST_INGEST_TOKEN,
};
use testkit::peer::{assert_denied, certs, peer_client, term, vote_for, vote_with_log};

fn bodies(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i:04}")).collect()
}

/// Posts `n` records to `node` (an empty cluster) and waits until every
/// member has committed them.
async fn commit_logs(cluster: &TestCluster, node: &TestNode, prefix: &str, n: usize) {
    let https = node.client(Duration::from_secs(10));
    assert_eq!(post_logs(&https, node, &bodies(prefix, n)).await, Some(200));
    cluster
        .wait_for_records("logs", n as u64, Duration::from_secs(30))
        .await;
}

/// Three nodes with TLS, mutual TLS and `[auth]`.
async fn secured_cluster() -> TestCluster {
    TestCluster::start(Options {
        nodes: 3,
        tls: true,
        auth: true,
        ..Default::default()
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tls_cluster_commits_what_the_sdk_sends_over_tls_with_a_token() {
    let cluster = secured_cluster().await;
    // A follower forwards over mutual TLS to the leader.
    let follower = cluster.a_follower().await;
    let node = &cluster.nodes[(follower - 1) as usize];
    assert!(node.http_url().starts_with("https://"));
    let report = cluster::send_logs_with_sdk(node, "tls", 100).await;
    assert!(report.contains("\"failures\": 0"), "{report}");
    cluster
        .wait_for_records("logs", 200, Duration::from_secs(60))
        .await;
    // The admin CLI reaches an https:// endpoint with --ca and a token.
    let (ok, out) = cluster::admin_cli(node, &["status"]);
    assert!(
        ok && out.contains("members:"),
        "admin status over TLS: {out}"
    );
}

/// An OTLP gRPC logs client over TLS, sending `authorization` if given.
async fn grpc_export(node: &TestNode, authorization: Option<&str>) -> Result<(), tonic::Status> {
    use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
    let ca = std::fs::read(node.ca.as_ref().expect("TLS node")).expect("CA");
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(ca));
    let channel = tonic::transport::Endpoint::from_shared(format!("https://{}", node.grpc))
        .expect("endpoint")
        .tls_config(tls)
        .expect("tls")
        .timeout(Duration::from_secs(10))
        .connect_lazy();
    let mut request = tonic::Request::new(otelraft::cli::bench::payload::logs_request(&bodies(
        "grpc-auth",
        2,
    )));
    if let Some(value) = authorization {
        request
            .metadata_mut()
            .insert("authorization", value.parse().expect("metadata"));
    }
    LogsServiceClient::new(channel)
        .export(request)
        .await
        .map(|_| ())
}

#[tokio::test(flavor = "multi_thread")]
async fn without_the_right_token_nothing_commits_and_admin_is_refused() {
    let cluster = secured_cluster().await;
    let node = &cluster.nodes[1];
    let https = node.client(Duration::from_secs(10));
    assert_eq!(post_logs(&https, node, &bodies("ok", 4)).await, Some(200));
    let bearer = format!("Bearer {TEST_INGEST_TOKEN}");
    if let Err(e) = grpc_export(node, Some(&bearer)).await {
        panic!("gRPC export with the ingest token failed: {e:?}");
    }
    cluster
        .wait_for_records("logs", 6, Duration::from_secs(30))
        .await;

    // OTLP/HTTP: 401 without a token or with an unknown one, 403 with an
    // admin token; the body is never read.
    let url = format!("{}/v1/logs", node.http_url());
    let body = prost::Message::encode_to_vec(&otelraft::cli::bench::payload::logs_request(
        &bodies("refused", 3),
    ));
    for (token, expected) in [
        (None, 401),
        (Some("not-a-token-of-this-cluster"), 401),
        (Some(TEST_ADMIN_TOKEN), 403),
    ] {
        let request = https
            .post(&url)
            .header("content-type", "application/x-protobuf")
            .body(body.clone());
        let request = match token {
            Some(t) => request.bearer_auth(t),
            None => request,
        };
        let resp = request.send().await.expect("reply");
        assert_eq!(resp.status().as_u16(), expected, "token {token:?}");
        if expected == 401 {
            assert_eq!(
                resp.headers().get("www-authenticate").map(|v| v.as_bytes()),
                Some(&b"Bearer"[..])
            );
        }
    }
    // OTLP/gRPC: UNAUTHENTICATED and PERMISSION_DENIED, the same way.
    let missing = grpc_export(node, None).await.expect_err("no token");
    assert_eq!(missing.code(), tonic::Code::Unauthenticated, "{missing:?}");
    let wrong = grpc_export(node, Some("Bearer not-a-token-of-this-cluster"))
        .await
        .expect_err("unknown token");
    assert_eq!(wrong.code(), tonic::Code::Unauthenticated, "{wrong:?}");
    let admin = grpc_export(node, Some(&format!("Bearer {TEST_ADMIN_TOKEN}")))
        .await
        .expect_err("admin token on ingest");
    assert_eq!(admin.code(), tonic::Code::PermissionDenied, "{admin:?}");

    // Admin API: 401 without a token, 403 with an ingest token, 200 with
    // an admin token; health and metrics stay open.
    let status_url = format!("{}/admin/v1/status", node.admin_url());
    let no_token = https.get(&status_url).send().await.expect("reply");
    assert_eq!(no_token.status().as_u16(), 401);
    let ingest = https
        .post(format!("{}/admin/v1/snapshot", node.admin_url()))
        .bearer_auth(TEST_INGEST_TOKEN)
        .send()
        .await
        .expect("reply");
    assert_eq!(ingest.status().as_u16(), 403);
    let admin = https
        .get(&status_url)
        .bearer_auth(TEST_ADMIN_TOKEN)
        .send()
        .await
        .expect("reply");
    assert_eq!(admin.status().as_u16(), 200);
    for open in ["/health/live", "/health/ready", "/metrics"] {
        let resp = https
            .get(format!("{}{open}", node.admin_url()))
            .send()
            .await
            .expect("reply");
        assert_eq!(resp.status().as_u16(), 200, "{open}");
    }
    // The CLI without a token is refused and says so.
    let (ok, out) = run_cli(
        std::process::Command::new(binary())
            .arg("admin")
            .arg("--endpoint")
            .arg(node.admin_url())
            .arg("--ca")
            .arg(node.ca.as_ref().expect("ca"))
            .env_remove("OTELRAFT_ADMIN_TOKEN")
            .arg("status"),
    );
    assert!(!ok && out.contains("401"), "{out}");

    // Nothing from the refused requests was committed, anywhere.
    for n in &cluster.nodes {
        assert_eq!(n.committed_records("logs").await, Some(6), "node {}", n.id);
    }
    let refused = cluster
        .metric_sum("otelraft_ingest_requests_refused_total", "unauthenticated")
        .await;
    assert_eq!(
        refused, 4.0,
        "two HTTP and two gRPC requests without a valid token"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn plaintext_to_every_tls_port_fails_fast_and_commits_nothing() {
    let cluster = TestCluster::start(Options {
        nodes: 3,
        tls: true,
        ..Default::default()
    })
    .await;
    let node = &cluster.nodes[0];
    commit_logs(&cluster, node, "before", 3).await;

    // HTTP ports answer a plaintext request with a 400 that says why.
    let plain = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    for url in [
        format!("http://{}/v1/logs", node.http),
        format!("http://{}/admin/v1/status", node.admin),
    ] {
        let resp = plain
            .post(&url)
            .header("content-type", "application/x-protobuf")
            .body(vec![1u8, 2, 3])
            .send()
            .await
            .unwrap_or_else(|e| panic!("{url}: expected a 400 reply, got {e}"));
        assert_eq!(resp.status().as_u16(), 400, "{url}");
        let text = resp.text().await.unwrap_or_default();
        assert!(text.contains("requires TLS"), "{url}: {text}");
    }

    // gRPC ports close the connection: the client fails with an error of
    // its own, well before its 10 s deadline.
    let grpc = tonic::transport::Endpoint::from_shared(format!("http://{}", node.grpc))
        .expect("endpoint")
        .timeout(Duration::from_secs(10))
        .connect_lazy();
    let mut logs =
        opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient::new(
            grpc,
        );
    let started = std::time::Instant::now();
    let refused = logs
        .export(otelraft::cli::bench::payload::logs_request(&bodies(
            "plain-grpc",
            2,
        )))
        .await
        .expect_err("plaintext gRPC to a TLS port must fail");
    assert!(
        started.elapsed() < Duration::from_secs(9),
        "plaintext gRPC waited for its deadline instead of failing: {refused:?}"
    );
    let peer = tonic::transport::Endpoint::from_shared(format!("http://{}", node.peer))
        .expect("endpoint")
        .timeout(Duration::from_secs(10))
        .connect_lazy();
    let started = std::time::Instant::now();
    let refused = PeerClient::new(peer)
        .node_info(otelraft::pb::peer::NodeInfoRequest {})
        .await
        .expect_err("plaintext to the peer port must fail");
    assert!(
        started.elapsed() < Duration::from_secs(9),
        "plaintext peer call waited for its deadline instead of failing: {refused:?}"
    );

    // Each refusal is logged with the listener it hit, and nothing from the
    // plaintext requests was committed.
    let log = node.log_text();
    for listener in ["OTLP HTTP", "admin", "OTLP gRPC", "peer"] {
        let line = format!("listener=\"{listener}\"");
        assert!(
            log.lines().any(
                |l| l.contains("plaintext connection to a TLS listener refused")
                    && l.contains(&line)
            ),
            "no plaintext refusal logged for the {listener} listener:\n{}",
            node.log_tail()
        );
    }
    for n in &cluster.nodes {
        assert_eq!(n.committed_records("logs").await, Some(3), "node {}", n.id);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_foreign_ca_or_a_false_identity_cannot_join_or_disturb() {
    let mut cluster = TestCluster::start(Options {
        nodes: 4,
        voters: Some(3),
        tls: true,
        ..Default::default()
    })
    .await;
    let leader = cluster.wait_for_leader(Duration::from_secs(30)).await;
    let term_before = term(&cluster.nodes[(leader - 1) as usize]).await;
    let cluster_tls = cluster.dir.path().join("tls");
    let ca = cluster_tls.join("ca.pem");

    // Node 4 holds a certificate from another CA and tries to join.
    let foreign = cluster.dir.path().join("foreign");
    certs(&foreign, "4");
    {
        let members: Vec<String> = cluster.nodes[..3]
            .iter()
            .map(|n| format!("\"{}\"", n.admin))
            .collect();
        let n4 = cluster.node(4);
        let config = std::fs::read_to_string(&n4.config_path).expect("config");
        let config = config.split("[tls]").next().unwrap_or_default().to_string();
        let config = config.replace(
            "bootstrap = false\n",
            &format!("bootstrap = false\njoin = [{}]\n", members.join(", ")),
        );
        std::fs::write(
            &n4.config_path,
            format!("{config}\n{}", tls_section(&foreign, "node-4")),
        )
        .expect("write config");
        n4.start();
    }
    // Its join attempts fail the handshake on the members' admin port.
    let refused = wait_until(Duration::from_secs(30), || async {
        cluster.nodes[..3]
            .iter()
            .any(|n| n.log_text().contains("TLS handshake failed"))
            .then_some(())
    })
    .await;
    assert!(
        refused.is_some(),
        "no member logged the foreign node's failed handshake\n{}",
        cluster.logs()
    );

    // A certificate from the cluster CA for node 9, which no membership
    // lists, cannot vote anyone in; node 2's certificate cannot speak for
    // node 1.
    certs(&cluster_tls, "9");
    let target = &cluster.nodes[(leader % 3) as usize];
    let outsider = peer_client(target, &cluster_tls, "node-9", &ca)
        .await
        .vote(vote_for(9, term_before + 10))
        .await
        .expect_err("a vote from a non-member must be refused");
    assert_denied(&outsider, "not in this node's membership");
    let impostor_id = if target.id == 2 { 3 } else { 2 };
    let impostor = peer_client(target, &cluster_tls, &format!("node-{impostor_id}"), &ca)
        .await
        .vote(vote_for(1, term_before + 10))
        .await
        .expect_err("a member speaking for another must be refused");
    assert_denied(&impostor, "may not speak for node 1");
    // A client with the foreign CA's certificate does not get past the
    // handshake of the peer port.
    let foreign_call = peer_client(target, &foreign, "node-4", &ca)
        .await
        .node_info(otelraft::pb::peer::NodeInfoRequest {})
        .await
        .expect_err("a foreign certificate must be refused");
    assert_ne!(foreign_call.code(), tonic::Code::Ok);

    // Nothing moved: the same leader in the same term, three members, and
    // the cluster still commits.
    for n in &cluster.nodes[..3] {
        let status = n.status().await.expect("status");
        assert_eq!(status["term"].as_u64(), Some(term_before), "node {}", n.id);
        assert_eq!(status["leader_id"].as_u64(), Some(leader), "node {}", n.id);
        let members = status["members"].as_array().map_or(0, |m| m.len());
        assert_eq!(members, 3, "node {}: {status}", n.id);
    }
    let node = &cluster.nodes[0];
    let https = node.client(Duration::from_secs(10));
    assert_eq!(
        post_logs(&https, node, &bodies("after", 5)).await,
        Some(200)
    );
    cluster.nodes[3].kill();
    cluster
        .wait_for_records("logs", 5, Duration::from_secs(30))
        .await;

    // A candidate this node does not list, but whose log is newer than
    // this node's, is let through to Raft: this node's membership may be
    // the stale one. (A pre-vote: Raft refuses it while the leader is
    // fresh, and it changes nothing.)
    let newer = otelraft::raft::LogId::new(
        openraft::impls::leader_id_adv::LeaderId {
            term: term_before + 5,
            node_id: 9,
        },
        1_000_000,
    );
    let target = &cluster.nodes[(leader % 3) as usize];
    let let_through = peer_client(target, &cluster_tls, "node-9", &ca)
        .await
        .pre_vote(vote_with_log(9, term_before + 10, Some(newer)))
        .await;
    assert!(
        let_through.is_ok(),
        "a candidate with a newer log must reach Raft: {let_through:?}"
    );
    assert_eq!(
        term(target).await,
        term_before,
        "a pre-vote changes nothing"
    );

    // A removed member's certificate stays valid, but its id is retired:
    // every peer call with it is refused.
    let leader_node = &cluster.nodes[(leader - 1) as usize];
    let removed = if leader == 3 { 2 } else { 3 };
    let (ok, out) = cluster::admin_cli(
        leader_node,
        &["remove", "--id", &removed.to_string(), "--force"],
    );
    assert!(ok, "remove node {removed}: {out}");
    let refused = peer_client(leader_node, &cluster_tls, &format!("node-{removed}"), &ca)
        .await
        .node_info(otelraft::pb::peer::NodeInfoRequest {})
        .await
        .expect_err("a removed node's certificate must be refused");
    assert_denied(&refused, "was removed from the cluster");
}

#[test]
fn start_up_refuses_tls_files_that_do_not_fit_naming_the_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tls = dir.path().join("tls");
    certs(&tls, "1,2");
    let check = |name: &str, tls_toml: &str| -> (bool, String) {
        let path = dir.path().join(format!("{name}.toml"));
        let config = format!(
            "node_id = 1\ndata_dir = {:?}\n\n[listen]\notlp_grpc = \"127.0.0.1:14317\"\notlp_http = \"127.0.0.1:14318\"\npeer = \"127.0.0.1:14400\"\nadmin = \"127.0.0.1:14480\"\n\n{tls_toml}",
            dir.path().join("data").display().to_string()
        );
        std::fs::write(&path, config).expect("write config");
        run_cli(
            std::process::Command::new(binary())
                .arg("check-config")
                .arg(&path),
        )
    };
    let (ok, out) = check("good", &tls_section(&tls, "node-1"));
    assert!(ok, "a fitting certificate must pass: {out}");

    let missing = tls_section(&tls, "node-1").replace("node-1-key.pem", "absent-key.pem");
    let (ok, out) = check("missing", &missing);
    assert!(
        !ok && out.contains("tls.key_file") && out.contains("absent-key.pem"),
        "{out}"
    );

    let other_node = tls_section(&tls, "node-2");
    let (ok, out) = check("other-node", &other_node);
    assert!(
        !ok && out.contains("tls.cert_file") && out.contains("node_id = 1"),
        "{out}"
    );

    let wrong_key = tls_section(&tls, "node-1").replace("node-1-key.pem", "node-2-key.pem");
    let (ok, out) = check("wrong-key", &wrong_key);
    assert!(!ok && out.contains("tls.key_file"), "{out}");

    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").expect("write");
    let bad_ca = tls_section(&tls, "node-1").replace(
        &format!("{:?}", tls.join("ca.pem").display().to_string()),
        &format!("{:?}", garbage.display().to_string()),
    );
    let (ok, out) = check("bad-ca", &bad_ca);
    assert!(
        !ok && out.contains("tls.ca_file") && out.contains("garbage.pem"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn members_join_over_mutual_tls_with_the_admin_token() {
    let mut cluster = TestCluster::start(Options {
        nodes: 3,
        join: true,
        tls: true,
        auth: true,
        ..Default::default()
    })
    .await;
    for id in 1..=3 {
        cluster.node(id).start();
    }
    // Node 1 bootstraps once it has surveyed nodes 2 and 3 over TLS; they
    // join through the leader's admin API, which needs the admin token.
    let voters = wait_until(Duration::from_secs(60), || async {
        let status = cluster.nodes[0].status().await?;
        let voters = status["members"]
            .as_array()?
            .iter()
            .filter(|m| m["role"] == "voter")
            .count();
        (voters == 3).then_some(())
    })
    .await;
    assert!(
        voters.is_some(),
        "the cluster did not form\n{}",
        cluster.logs()
    );
    commit_logs(&cluster, &cluster.nodes[2], "joined", 2).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_https_sink_with_its_own_ca_and_a_bearer_token_file_receives_the_export() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The sink's server certificate comes from a CA the system does not
    // trust; only `ca_file` makes the sink accept it.
    let sink_ca = dir.path().join("sink-ca");
    certs(&sink_ca, "1");
    let files = otelraft::tls::material::TlsFiles::load(&otelraft::tls::TlsSection {
        enabled: true,
        cert_file: sink_ca.join("node-1.pem"),
        key_file: sink_ca.join("node-1-key.pem"),
        ca_file: sink_ca.join("ca.pem"),
        handshake_timeout_ms: 5000,
    })
    .expect("sink TLS files");
    let server_tls = otelraft::tls::ServerTls::new(&files, Duration::from_secs(5)).expect("tls");
    let token = "sink-token-0123456789abcdef";
    let server_tls = std::sync::Arc::new(server_tls);
    let receiver =
        loki::LokiReceiver::start_tls(server_tls.clone(), &format!("Bearer {token}")).await;
    // The control: the same server, but a sink without `ca_file`.
    let untrusted = loki::LokiReceiver::start_tls(server_tls, &format!("Bearer {token}")).await;
    let token_file = dir.path().join("loki.token");
    std::fs::write(&token_file, format!("# the Loki tenant's token\n{token}\n")).expect("token");
    let env = vec![
        ("OTELRAFT_SINKS__LOKI__KIND".to_string(), "loki".to_string()),
        (
            "OTELRAFT_SINKS__LOKI__ENDPOINT".to_string(),
            receiver.push_url(),
        ),
        (
            "OTELRAFT_SINKS__LOKI__CA_FILE".to_string(),
            sink_ca.join("ca.pem").display().to_string(),
        ),
        (
            "OTELRAFT_SINKS__LOKI__BEARER_TOKEN_FILE".to_string(),
            token_file.display().to_string(),
        ),
        (
            "OTELRAFT_SINKS__LOKI__RETRY_MAX_MS".to_string(),
            "1000".to_string(),
        ),
        ("OTELRAFT_SINKS__NOCA__KIND".to_string(), "loki".to_string()),
        (
            "OTELRAFT_SINKS__NOCA__ENDPOINT".to_string(),
            untrusted.push_url(),
        ),
        (
            "OTELRAFT_SINKS__NOCA__BEARER_TOKEN_FILE".to_string(),
            token_file.display().to_string(),
        ),
    ];
    assert!(receiver.push_url().starts_with("https://"));
    let cluster = TestCluster::start(Options {
        nodes: 3,
        env,
        ..Default::default()
    })
    .await;
    commit_logs(&cluster, &cluster.nodes[0], "to-loki", 5).await;
    let stored = wait_until(Duration::from_secs(30), || async {
        let lines: Vec<String> = receiver.stored().into_iter().map(|l| l.line).collect();
        (lines.len() >= 5).then_some(lines)
    })
    .await;
    let stored =
        stored.unwrap_or_else(|| panic!("nothing reached the https sink\n{}", cluster.logs()));
    for i in 0..5 {
        let body = format!("to-loki-{i:04}");
        assert_eq!(
            stored.iter().filter(|l| **l == body).count(),
            1,
            "{body}: {stored:?}"
        );
    }
    assert_eq!(receiver.stats().requests_rejected, 0);
    // Without the CA, the sink does not trust the server: nothing arrives.
    assert!(
        untrusted.stored().is_empty(),
        "a sink without ca_file trusted the server"
    );
}

/// The certificate `node` serves on its OTLP HTTP port, trusting `ca`.
async fn served_certificate(node: &TestNode, ca: &Path) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(ca).expect("CA") {
        roots.add(cert.expect("CA cert")).expect("root");
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(&node.http)
        .await
        .expect("connect");
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("handshake");
    tls.get_ref().1.peer_certificates().expect("certificate")[0].to_vec()
}

fn certificate_der(path: &Path) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::from_pem_file(path)
        .expect("certificate file")
        .to_vec()
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_certificates_and_tokens_and_refuses_broken_files() {
    let cluster = secured_cluster().await;
    let tls_dir = cluster.dir.path().join("tls");
    let ca = tls_dir.join("ca.pem");
    let node = &cluster.nodes[0];
    let cert_file = tls_dir.join("node-1.pem");
    assert_eq!(
        served_certificate(node, &ca).await,
        certificate_der(&cert_file)
    );

    // A new certificate for node 1 from the same CA, and a new ingest token
    // in place of the old one.
    let (ok, out) = run_cli(
        std::process::Command::new(binary())
            .args(["certs", "--nodes", "1", "--force", "--dir"])
            .arg(&tls_dir),
    );
    assert!(ok, "{out}");
    let rotated = "rotated-ingest-token-0123456789";
    std::fs::write(
        cluster.dir.path().join("ingest.token"),
        format!("{rotated}\n"),
    )
    .expect("token");
    node.hangup();
    let reloaded = wait_until(Duration::from_secs(10), || async {
        node.log_text().contains("SIGHUP: reloaded").then_some(())
    })
    .await;
    assert!(reloaded.is_some(), "{}", node.log_tail());
    assert_eq!(
        served_certificate(node, &ca).await,
        certificate_der(&cert_file),
        "the node still serves the old certificate"
    );
    let https = node.client(Duration::from_secs(10));
    let url = format!("{}/v1/logs", node.http_url());
    let body = prost::Message::encode_to_vec(&otelraft::cli::bench::payload::logs_request(
        &bodies("rotated", 2),
    ));
    for (token, expected) in [(TEST_INGEST_TOKEN, 401), (rotated, 200)] {
        let status = https
            .post(&url)
            .header("content-type", "application/x-protobuf")
            .bearer_auth(token)
            .body(body.clone())
            .send()
            .await
            .expect("reply")
            .status()
            .as_u16();
        assert_eq!(status, expected, "token {token}");
    }
    // Peers still talk to the node with its new certificate.
    cluster
        .wait_for_records("logs", 2, Duration::from_secs(30))
        .await;

    // A broken key: the reload is refused, naming the field, and the node
    // keeps serving what it had.
    let served_before = served_certificate(node, &ca).await;
    std::fs::write(tls_dir.join("node-1-key.pem"), "not a key\n").expect("write");
    node.hangup();
    let refused = wait_until(Duration::from_secs(10), || async {
        let log = node.log_text();
        (log.contains("reload refused") && log.contains("tls.key_file")).then_some(())
    })
    .await;
    assert!(refused.is_some(), "{}", node.log_tail());
    assert_eq!(served_certificate(node, &ca).await, served_before);
    assert!(node.status().await.is_some(), "the node stopped");
}
