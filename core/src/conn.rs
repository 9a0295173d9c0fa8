//! One client connection: its receive buffer, cut into request frames, and its queue of
//! requests in flight, whose responses leave in request order.
//!
//! Received bytes a driver hands over as `Bytes` ([`Conn::receive_owned`]) are kept as they
//! are, and a frame that lies wholly inside them is cut out as a slice, not copied (so are the
//! records a produce request carries, on to the store). Only a frame that spans two handed-over
//! chunks, or bytes lent as `&[u8]` ([`Conn::receive`]), are copied into the frame buffer.
//!
//! Kafka answers requests on a connection in the order they arrived. Each request takes a slot
//! at the back of the queue; its response fills the slot whenever it is ready; responses leave
//! from the front, so an unfinished head holds back those behind it. A produce with acks=0
//! fills its slot with nothing.

use std::collections::VecDeque;
use std::net::SocketAddr;

use bytes::{Buf, Bytes, BytesMut};

use crate::codec::KStr;
use crate::io::CloseReason;
use crate::security::sasl::Auth;

pub use crate::io::Frame;

#[derive(Debug)]
enum Slot {
    Waiting(u64),
    Ready(u64, Frame),
    Silent(u64),
}

impl Slot {
    fn id(&self) -> u64 {
        match self {
            Slot::Waiting(id) | Slot::Ready(id, _) | Slot::Silent(id) => *id,
        }
    }
}

/// A connection's state.
#[derive(Debug)]
pub struct Conn {
    /// Who is on the other end.
    pub peer: SocketAddr,
    /// What the client reported in ApiVersions v3+ (KIP-511): software name and version.
    pub client_software: Option<(KStr, KStr)>,
    /// Copied bytes: lent ones, or the start of a frame that spans chunks. Comes first in
    /// stream order.
    rbuf: BytesMut,
    /// A handed-over chunk not yet cut into frames; follows `rbuf` in stream order.
    chunk: Bytes,
    slots: VecDeque<Slot>,
    next_slot: u64,
    /// Response bytes handed to the driver and not yet reported written.
    pub unwritten: usize,
    /// Fetches read and not yet answered. Their answers can be large, so nothing more is read
    /// from the connection meanwhile (Kafka serves a connection one request at a time; clients
    /// never pipeline fetches on one connection).
    pub fetches_in_flight: u32,
    /// The driver was told to stop reading ([`crate::Output::PauseRead`]) and not yet to
    /// resume.
    pub read_paused: bool,
    /// Where it is in authentication, and once through, its principal.
    pub auth: Auth,
    /// The listener it came in through.
    pub listener: u16,
}

impl Conn {
    /// A new connection from `peer`.
    #[must_use]
    pub fn new(peer: SocketAddr, auth: Auth) -> Self {
        Self {
            peer,
            client_software: None,
            rbuf: BytesMut::new(),
            chunk: Bytes::new(),
            slots: VecDeque::new(),
            next_slot: 0,
            unwritten: 0,
            fetches_in_flight: 0,
            read_paused: false,
            auth,
            listener: 0,
        }
    }

    /// Buffers received bytes (copied).
    pub fn receive(&mut self, bytes: &[u8]) {
        self.spill_chunk();
        self.rbuf.extend_from_slice(bytes);
    }

    /// Buffers received bytes handed over: kept, not copied, unless an earlier chunk is still
    /// waiting to be cut (reading paused mid-chunk), which is rare.
    pub fn receive_owned(&mut self, bytes: Bytes) {
        if self.chunk.is_empty() {
            self.chunk = bytes;
        } else {
            self.spill_chunk();
            self.rbuf.extend_from_slice(&bytes);
        }
    }

    /// Moves the uncut chunk behind the copied bytes, keeping stream order.
    fn spill_chunk(&mut self) {
        if !self.chunk.is_empty() {
            self.rbuf.extend_from_slice(&self.chunk);
            self.chunk = Bytes::new();
        }
    }

    /// Bytes received but not yet cut into frames.
    #[must_use]
    pub fn buffered(&self) -> usize {
        self.rbuf.len() + self.chunk.len()
    }

    /// Cuts the next whole request frame (without its size prefix) off the buffer. A size
    /// prefix that is negative or above `max` is an error: the connection must close.
    pub fn next_frame(&mut self, max: usize) -> Result<Option<Bytes>, CloseReason> {
        if self.rbuf.is_empty() {
            // A frame wholly inside the handed-over chunk: a slice of it.
            if let Some(len) = frame_len(&self.chunk, max)? {
                if self.chunk.len() >= 4 + len {
                    self.chunk.advance(4);
                    return Ok(Some(self.chunk.split_to(len)));
                }
                // Room for the whole frame first, so that its bytes are copied once.
                self.rbuf.reserve(4 + len);
            }
            // A partial frame (or nothing): copied, so that the next chunk can complete it.
            self.spill_chunk();
        }
        loop {
            let Some(len) = frame_len(&self.rbuf, max)? else {
                if !self.take_from_chunk(4 - self.rbuf.len()) {
                    return Ok(None);
                }
                continue;
            };
            if self.rbuf.len() >= 4 + len {
                self.rbuf.advance(4);
                return Ok(Some(self.rbuf.split_to(len).freeze()));
            }
            // Make room for the whole frame once, rather than growing step by step.
            self.rbuf.reserve(4 + len - self.rbuf.len());
            if !self.take_from_chunk(4 + len - self.rbuf.len()) {
                return Ok(None);
            }
        }
    }

    /// Copies up to `want` bytes from the front of the chunk into `rbuf`; false if the chunk
    /// is empty.
    fn take_from_chunk(&mut self, want: usize) -> bool {
        if self.chunk.is_empty() {
            return false;
        }
        let part = self.chunk.split_to(want.min(self.chunk.len()));
        self.rbuf.extend_from_slice(&part);
        true
    }

    /// Takes a slot for a new request; its response must later fill it.
    pub fn open_slot(&mut self) -> u64 {
        let id = self.next_slot;
        self.next_slot += 1;
        self.slots.push_back(Slot::Waiting(id));
        id
    }

    /// Requests waiting for their response (or behind one that is).
    #[must_use]
    pub fn in_flight(&self) -> usize {
        self.slots.len()
    }

    /// Fills slot `id` with its response (`None`: the request gets no response).
    pub fn fill(&mut self, id: u64, frame: Option<Frame>) {
        let Some(slot) = self.slots.iter_mut().find(|s| s.id() == id) else {
            debug_assert!(false, "response for unknown slot {id}");
            return;
        };
        assert!(matches!(slot, Slot::Waiting(_)), "slot {id} answered twice");
        *slot = match frame {
            Some(f) => Slot::Ready(id, f),
            None => Slot::Silent(id),
        };
    }

    /// Takes the responses that may leave now: the ready ones at the front, in order.
    pub fn take_ready(&mut self) -> Option<Frame> {
        loop {
            match self.slots.front()? {
                Slot::Waiting(_) => return None,
                Slot::Silent(_) => {
                    self.slots.pop_front();
                }
                Slot::Ready(..) => {
                    let Some(Slot::Ready(_, frame)) = self.slots.pop_front() else { return None };
                    return Some(frame);
                }
            }
        }
    }
}

/// The length of the frame whose size prefix starts `buf`, if the prefix is there; an error if
/// it is negative or above `max`.
fn frame_len(buf: &[u8], max: usize) -> Result<Option<usize>, CloseReason> {
    let Some(prefix) = buf.first_chunk::<4>() else { return Ok(None) };
    let size = i32::from_be_bytes(*prefix);
    match usize::try_from(size) {
        Ok(len) if len <= max => Ok(Some(len)),
        _ => Err(CloseReason::FrameTooLarge { size: i64::from(size), max }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smallvec::SmallVec;

    fn conn() -> Conn {
        Conn::new("127.0.0.1:1".parse().unwrap(), Auth::Done(KStr::from_static("User:ANONYMOUS")))
    }

    #[test]
    fn frames_are_cut_from_any_split_of_the_stream() {
        let mut c = conn();
        let stream = [0u8, 0, 0, 2, b'a', b'b', 0, 0, 0, 0, 0, 0, 0, 1];
        for b in &stream[..5] {
            c.receive(&[*b]);
            assert_eq!(c.next_frame(10), Ok(None));
        }
        c.receive(&stream[5..]);
        assert_eq!(c.next_frame(10).unwrap().as_deref(), Some(&b"ab"[..]));
        assert_eq!(c.next_frame(10).unwrap().as_deref(), Some(&b""[..]));
        assert_eq!(c.next_frame(10), Ok(None));
        assert_eq!(c.buffered(), 4);
    }

    #[test]
    fn handed_over_chunks_are_cut_in_stream_order() {
        let stream: Vec<u8> =
            [&[0u8, 0, 0, 2, b'a', b'b'][..], &[0, 0, 0, 3, b'c', b'd', b'e'], &[0, 0, 0, 1, b'f']].concat();
        // Every way to split the stream in three, handed over, lent, or mixed.
        for i in 0..=stream.len() {
            for j in i..=stream.len() {
                for lend in 0..4u8 {
                    let mut c = conn();
                    let mut frames = Vec::new();
                    for (k, part) in [&stream[..i], &stream[i..j], &stream[j..]].into_iter().enumerate() {
                        if lend & (1 << (k % 2)) != 0 {
                            c.receive(part);
                        } else {
                            c.receive_owned(Bytes::copy_from_slice(part));
                        }
                        // Cut frames only after some parts, as a paused reader would.
                        if k != 1 || lend < 2 {
                            while let Some(f) = c.next_frame(10).unwrap() {
                                frames.push(f);
                            }
                        }
                    }
                    while let Some(f) = c.next_frame(10).unwrap() {
                        frames.push(f);
                    }
                    assert_eq!(frames, [&b"ab"[..], b"cde", b"f"], "split at {i}, {j}, lend {lend}");
                    assert_eq!(c.buffered(), 0);
                }
            }
        }
    }

    #[test]
    fn a_frame_inside_a_handed_over_chunk_is_not_copied() {
        let mut c = conn();
        let chunk = Bytes::from_static(&[0, 0, 0, 2, b'a', b'b', 0, 0]);
        c.receive_owned(chunk.clone());
        let f = c.next_frame(10).unwrap().unwrap();
        assert_eq!(f.as_ptr(), chunk[4..].as_ptr());
        assert_eq!(c.next_frame(10), Ok(None));
        assert_eq!(c.buffered(), 2);
    }

    #[test]
    fn oversized_and_negative_sizes_close_the_connection() {
        let mut c = conn();
        c.receive(&[0, 0, 1, 0]);
        assert_eq!(c.next_frame(255), Err(CloseReason::FrameTooLarge { size: 256, max: 255 }));
        let mut c = conn();
        c.receive(&[0xff, 0xff, 0xff, 0xff]);
        assert!(c.next_frame(255).is_err());
        let mut c = conn();
        c.receive_owned(Bytes::from_static(&[0, 0, 1, 0]));
        assert!(c.next_frame(255).is_err());
    }

    #[test]
    fn responses_leave_in_request_order() {
        let mut c = conn();
        let (a, b, s, d) = (c.open_slot(), c.open_slot(), c.open_slot(), c.open_slot());
        c.fill(b, Some(SmallVec::from_vec(vec![Bytes::from_static(b"b")])));
        assert!(c.take_ready().is_none(), "b waits for a");
        c.fill(s, None);
        c.fill(a, Some(SmallVec::from_vec(vec![Bytes::from_static(b"a")])));
        assert_eq!(c.take_ready().unwrap()[0], "a");
        assert_eq!(c.take_ready().unwrap()[0], "b");
        assert!(c.take_ready().is_none(), "the silent slot is skipped, d still waits");
        c.fill(d, Some(SmallVec::from_vec(vec![Bytes::from_static(b"d")])));
        assert_eq!(c.take_ready().unwrap()[0], "d");
        assert_eq!(c.in_flight(), 0);
    }
}
