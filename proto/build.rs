//! Compiles `smq/*.proto` with protox (a protobuf compiler written in Rust), so a fresh machine
//! needs no `protoc` binary.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "smq/mq_schema.proto",
        "smq/mq_broker.proto",
        "smq/master.proto",
        "smq/filer.proto",
    ];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let descriptors = protox::compile(files, ["smq"])?;
    tonic_prost_build::configure()
        .build_server(false)
        .compile_fds(descriptors)?;
    Ok(())
}
