//! A minimal blocking Kafka client over a real socket, built on kelp's own codec: for
//! end-to-end tests that need exact control of every request (crash points, hostile input).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use bytes::Bytes;
use kelp_core::codec::generated::header::ResponseHeader;
use kelp_core::codec::generated::{RequestBody, ResponseBody};
use kelp_core::codec::{ApiKey, Message, Reader};

use crate::harness::Harness;

/// One connection to a broker.
pub struct RawClient {
    /// The socket.
    pub stream: TcpStream,
    next_correlation: i32,
}

impl RawClient {
    /// Connects with 10 s read and write timeouts.
    pub fn connect(addr: SocketAddr) -> std::io::Result<Self> {
        let stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.set_write_timeout(Some(Duration::from_secs(10)))?;
        Ok(Self { stream, next_correlation: 1 })
    }

    /// Sends a request and reads its response.
    pub fn call(&mut self, body: RequestBody, version: i16) -> std::io::Result<ResponseBody> {
        let api = body.api_key();
        let corr = self.send(&body, version)?;
        let (got, resp) = self.recv(api, version)?;
        assert_eq!(got, corr, "responses out of order");
        Ok(resp)
    }

    /// Sends a request without waiting for its response (pipelining); returns its
    /// correlation id.
    pub fn send(&mut self, body: &RequestBody, version: i16) -> std::io::Result<i32> {
        let corr = self.next_correlation;
        self.next_correlation += 1;
        self.stream.write_all(&Harness::frame(body, version, corr))?;
        Ok(corr)
    }

    /// Reads the next response, of a request of `api` at `version`: (correlation id, body).
    pub fn recv(&mut self, api: ApiKey, version: i16) -> std::io::Result<(i32, ResponseBody)> {
        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size)?;
        let len = usize::try_from(i32::from_be_bytes(size)).map_err(|_| std::io::ErrorKind::InvalidData)?;
        let mut buf = vec![0u8; len];
        self.stream.read_exact(&mut buf)?;
        let buf = Bytes::from(buf);
        let mut r = Reader::new(&buf);
        let header =
            ResponseHeader::decode(&mut r, api.response_header_version(version)).map_err(std::io::Error::other)?;
        let body = ResponseBody::decode(api, &mut r, version).map_err(std::io::Error::other)?;
        Ok((header.correlation_id, body))
    }
}
