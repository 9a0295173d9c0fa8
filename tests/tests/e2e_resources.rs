//! What connections cost: 1000 idle connections (each has made one request, so the broker holds
//! its state) must cost kelp less than 64 KiB of resident memory each. The figure is printed
//! for docs/BENCHMARKS.md; runs on whichever runtime and store the environment selects.

use std::time::Duration;

use kelp_core::codec::generated::RequestBody;
use kelp_core::codec::generated::api_versions::ApiVersionsRequest;
use kelp_tests::expect_body;
use kelp_tests::raw::RawClient;
use kelp_tests::server::KelpServer;

const CONNECTIONS: usize = 1000;

#[test]
fn a_thousand_idle_connections_cost_less_than_64_kib_each() {
    let server = KelpServer::start(&[]);
    let hello = || {
        RequestBody::ApiVersions(ApiVersionsRequest {
            client_software_name: "kelp-e2e".into(),
            client_software_version: "1.0".into(),
            ..Default::default()
        })
    };
    // Warm up: the first connections allocate buffers that then stay.
    let mut warm = RawClient::connect(server.addr).expect("connect");
    expect_body!(warm.call(hello(), 3).expect("api versions"), ApiVersions);
    std::thread::sleep(Duration::from_millis(200));
    let before = server.rss_kib().expect("RSS of kelp");
    let mut conns = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        let mut c = RawClient::connect(server.addr).expect("connect");
        expect_body!(c.call(hello(), 3).expect("api versions"), ApiVersions);
        conns.push(c);
    }
    std::thread::sleep(Duration::from_millis(300));
    let after = server.rss_kib().expect("RSS of kelp");
    let per_conn = after.saturating_sub(before) * 1024 / CONNECTIONS as u64;
    println!("{CONNECTIONS} idle connections: RSS {before} KiB -> {after} KiB, {per_conn} bytes per connection");
    assert!(per_conn < 64 * 1024, "{per_conn} bytes per idle connection");
    // They still work.
    let last = conns.last_mut().expect("connections");
    expect_body!(last.call(hello(), 3).expect("api versions"), ApiVersions);
}
