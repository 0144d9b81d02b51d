//! Regenerates the code in `src/gen/` from `proto/` and fails on drift.

use std::path::{Path, PathBuf};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn generated_code_matches_proto() {
    let root = workspace_root();
    let proto_dir = root.join("proto");
    let file_descriptors = protox::compile([proto_dir.join("truc/v1/truc.proto")], [&proto_dir])
        .expect("proto/truc/v1/truc.proto compiles");
    let out = tempfile::tempdir().expect("temp dir");
    // Reflection serves this descriptor set, so it is generated and checked too.
    let descriptor_bytes = prost::Message::encode_to_vec(&file_descriptors);
    std::fs::write(out.path().join("truc_descriptor.bin"), descriptor_bytes)
        .expect("write descriptor set");
    tonic_prost_build::configure()
        .out_dir(out.path())
        .compile_fds(file_descriptors)
        .expect("code generation succeeds");

    let gen_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/gen");
    let mut drifted = Vec::new();
    for name in ["truc.v1.rs", "truc_descriptor.bin"] {
        let fresh = std::fs::read(out.path().join(name)).expect("generated file exists");
        let committed = std::fs::read(gen_dir.join(name)).unwrap_or_default();
        if fresh != committed {
            if std::env::var_os("TRUC_REGENERATE").is_some() {
                std::fs::write(gen_dir.join(name), &fresh).expect("write generated file");
            } else {
                drifted.push(name);
            }
        }
    }
    assert!(
        drifted.is_empty(),
        "src/gen/{drifted:?} is out of date with proto/; run `TRUC_REGENERATE=1 cargo test -p truc-proto`"
    );
}
