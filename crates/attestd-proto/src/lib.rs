//! The attestd v1 gRPC API: messages, service traits and clients generated
//! from `proto/attestd/v1`. Nothing here is written by hand except this file.

#![forbid(unsafe_code)]

/// Package `attestd.v1`.
pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("attestd.v1");
}

/// Encoded `FileDescriptorSet` of the API, for the reflection service.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/attestd_descriptor.bin"));
