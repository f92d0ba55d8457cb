//! Compiles the `.proto` files with `protox`, a protobuf compiler written in
//! Rust, so that building needs no system `protoc`.

const PROTOS: &[&str] = &[
    "proto/otelraft/log.proto",
    "proto/otelraft/peer.proto",
    "proto/prometheus/remote.proto",
    "proto/loki/push.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let descriptors = protox::compile(PROTOS, ["proto"])?;
    tonic_prost_build::configure()
        .bytes(".")
        .btree_map(".")
        .type_attribute(
            ".otelraft.log.v1",
            "#[derive(serde::Serialize, serde::Deserialize)]",
        )
        .compile_fds(descriptors)?;
    Ok(())
}
