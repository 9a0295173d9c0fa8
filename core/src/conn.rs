//! One client connection: its receive buffer, cut into request frames, and its queue of
//! requests in flight, whose responses leave in request order.
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
    rbuf: BytesMut,
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
}

impl Conn {
    /// A new connection from `peer`.
    #[must_use]
    pub fn new(peer: SocketAddr) -> Self {
        Self {
            peer,
            client_software: None,
            rbuf: BytesMut::new(),
            slots: VecDeque::new(),
            next_slot: 0,
            unwritten: 0,
            fetches_in_flight: 0,
            read_paused: false,
        }
    }

    /// Buffers received bytes.
    pub fn receive(&mut self, bytes: &[u8]) {
        self.rbuf.extend_from_slice(bytes);
    }

    /// Bytes received but not yet cut into frames.
    #[must_use]
    pub fn buffered(&self) -> usize {
        self.rbuf.len()
    }

    /// Cuts the next whole request frame (without its size prefix) off the buffer. A size
    /// prefix that is negative or above `max` is an error: the connection must close.
    pub fn next_frame(&mut self, max: usize) -> Result<Option<Bytes>, CloseReason> {
        let Some(prefix) = self.rbuf.first_chunk::<4>() else { return Ok(None) };
        let size = i32::from_be_bytes(*prefix);
        let Ok(len) = usize::try_from(size) else {
            return Err(CloseReason::FrameTooLarge { size: i64::from(size), max });
        };
        if len > max {
            return Err(CloseReason::FrameTooLarge { size: i64::from(size), max });
        }
        if self.rbuf.len() < 4 + len {
            // Make room for the whole frame once, rather than growing step by step.
            self.rbuf.reserve(4 + len - self.rbuf.len());
            return Ok(None);
        }
        self.rbuf.advance(4);
        Ok(Some(self.rbuf.split_to(len).freeze()))
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

#[cfg(test)]
mod tests {
    use super::*;
    use smallvec::SmallVec;

    fn conn() -> Conn {
        Conn::new("127.0.0.1:1".parse().unwrap())
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
    fn oversized_and_negative_sizes_close_the_connection() {
        let mut c = conn();
        c.receive(&[0, 0, 1, 0]);
        assert_eq!(c.next_frame(255), Err(CloseReason::FrameTooLarge { size: 256, max: 255 }));
        let mut c = conn();
        c.receive(&[0xff, 0xff, 0xff, 0xff]);
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
