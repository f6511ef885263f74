//! Compiles `proto/checkout/v1/*.proto` with tonic-prost-build and writes a
//! file descriptor set (for gRPC server reflection) next to the generated code.
//!
//! `protoc` comes from the `protoc-bin-vendored` crate unless `PROTOC` is set,
//! so a fresh machine builds with no manual step.

use std::{env, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if env::var_os("PROTOC").is_none() {
        // SAFETY: build scripts are single-threaded; nothing else reads the environment now.
        unsafe { env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?) };
    }
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    let protos = [
        PathBuf::from("proto/checkout/v1/events.proto"),
        PathBuf::from("proto/checkout/v1/gateway.proto"),
    ];
    let includes = [PathBuf::from("proto"), protoc_bin_vendored::include_path()?];

    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("checkout_v1_descriptor.bin"))
        .compile_protos(&protos, &includes)?;

    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
