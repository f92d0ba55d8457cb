fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    tonic_prost_build::configure()
        .bytes(".")
        .btree_map(".")
        .type_attribute(
            ".otelraft.log.v1",
            "#[derive(serde::Serialize, serde::Deserialize)]",
        )
        .compile_protos(
            &[
                "proto/otelraft/log.proto",
                "proto/otelraft/peer.proto",
                "proto/prometheus/remote.proto",
                "proto/loki/push.proto",
            ],
            &["proto"],
        )?;
    Ok(())
}
