//! Rust types and gRPC clients for the SeaweedFS message queue, generated from our own `.proto`
//! files in `smq/`. Each module is one protobuf package.

#![allow(clippy::all, rust_2018_idioms)]

pub mod schema_pb {
    tonic::include_proto!("schema_pb");
}

pub mod messaging_pb {
    tonic::include_proto!("messaging_pb");
}

pub mod master_pb {
    tonic::include_proto!("master_pb");
}

pub mod filer_pb {
    tonic::include_proto!("filer_pb");
}
