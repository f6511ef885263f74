//! Generated protobuf and tonic code for package `checkout.v1`
//! (see `proto/checkout/v1/` and `build.rs`).

#![allow(clippy::all, missing_docs)]

tonic::include_proto!("checkout.v1");

/// The encoded `FileDescriptorSet` of `proto/checkout/v1/*.proto` (with its
/// imports), for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    tonic::include_file_descriptor_set!("checkout_v1_descriptor");
