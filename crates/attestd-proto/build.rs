//! Compiles proto/attestd/v1 with protox (a pure-Rust protobuf compiler), so a
//! fresh machine needs no system `protoc`. Also writes the encoded descriptor
//! set that the reflection service serves.

use std::{env, fs, path::PathBuf};

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let proto_root = manifest.join("../../proto");
    let files = [
        "attestd/v1/common.proto",
        "attestd/v1/device_attestation.proto",
        "attestd/v1/factory.proto",
        "attestd/v1/admin.proto",
        "attestd/v1/fleet.proto",
        "attestd/v1/baselines.proto",
        "attestd/v1/release.proto",
        "attestd/v1/audit.proto",
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={}", proto_root.join(f).display());
    }
    let fds = protox::compile(files, [&proto_root])?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out.join("attestd_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)?;
    Ok(())
}
