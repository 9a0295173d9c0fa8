//! [`Req`]: the handle by which a handler, a parked job or a group answers one request.

use crate::codec::ApiKey;
use crate::io::ConnId;
use crate::time::Instant;

/// One request being answered: where the response goes and how to encode it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Req {
    /// The connection.
    pub conn: ConnId,
    /// The connection's response slot for this request.
    pub slot: u64,
    /// The API.
    pub api: ApiKey,
    /// The request (and response) version.
    pub version: i16,
    /// The client's correlation id.
    pub correlation_id: i32,
    /// When the request was read (for the latency histogram).
    pub at: Instant,
    /// The listener it came in through ([`crate::io::Origin::listener`]): answers that name
    /// this broker give that listener's advertised address.
    pub listener: u16,
}
