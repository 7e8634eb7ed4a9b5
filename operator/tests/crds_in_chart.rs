//! The chart's CRDs must be exactly what `kafka-operator crds` prints: the Rust types are the
//! single source of truth. Regenerate with
//! `cargo run -p kafka-operator -- crds > charts/kafka-smq-operator/crds/crds.yaml`.

use std::path::Path;
use std::process::Command;

#[test]
fn chart_crds_match_the_generated_ones() {
    let out = Command::new(env!("CARGO_BIN_EXE_kafka-operator"))
        .arg("crds")
        .output()
        .expect("run kafka-operator crds");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let generated = String::from_utf8(out.stdout).expect("UTF-8 YAML");
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/kafka-smq-operator/crds/crds.yaml");
    let committed =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    assert!(
        generated == committed,
        "{} differs from `kafka-operator crds`; regenerate it with \
         `cargo run -p kafka-operator -- crds > charts/kafka-smq-operator/crds/crds.yaml`",
        path.display()
    );
    // Both kinds, each with the shape the API server needs.
    let docs: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(&generated)
        .map(|d| serde::Deserialize::deserialize(d).expect("valid YAML"))
        .collect();
    let names: Vec<&str> = docs
        .iter()
        .map(|d| d["metadata"]["name"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        names,
        [
            "kafkagateways.kafka.seaweedfs.com",
            "kafkatopics.kafka.seaweedfs.com"
        ]
    );
}
