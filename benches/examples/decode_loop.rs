//! A fixed loop of ProduceRequest decodes, for instruction-count profiling with callgrind
//! (`valgrind --tool=callgrind target/release/examples/decode_loop`), where criterion's timing
//! is too noisy to rank small differences.

use bytes::Bytes;
use kelp_core::codec::generated::produce::{PartitionProduceData, ProduceRequest, TopicProduceData};
use kelp_core::codec::{Message, Reader};
use std::hint::black_box;

fn main() {
    let which = std::env::args().nth(1).unwrap_or_else(|| "kelp".into());
    let records = Bytes::from(vec![0xabu8; 1024]);
    let req = ProduceRequest {
        acks: -1,
        topic_data: vec![TopicProduceData {
            name: "bench-topic".into(),
            partition_data: (0..16)
                .map(|index| PartitionProduceData { index, records: Some(records.clone()), ..Default::default() })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    };
    let bytes = req.to_bytes(11);
    for _ in 0..100_000 {
        if which == "kelp" {
            black_box(ProduceRequest::decode(&mut Reader::new(black_box(&bytes)), 11).is_ok());
        } else {
            use kafka_protocol::protocol::Decodable;
            let mut b = black_box(&bytes).clone();
            black_box(kafka_protocol::messages::ProduceRequest::decode(&mut b, 11).is_ok());
        }
    }
}
