//! Generates the SeaweedFS gRPC clients from kelp's own minimal protos in `proto/`, with the
//! pure-Rust `protox` compiler, so building needs no system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files =
        ["proto/schema.proto", "proto/master.proto", "proto/filer.proto", "proto/mq_broker.proto", "proto/view.proto"];
    for f in &files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["proto"])?;
    // A BTreeMap for RecordValue's fields: a RecordValue then always encodes to the same bytes.
    tonic_prost_build::configure()
        .build_server(false)
        .bytes(".")
        .btree_map(".schema_pb.RecordValue.fields")
        .compile_fds(fds)?;
    Ok(())
}
