//! A connection's output waiting for its socket: response chunks as the broker handed them
//! over (record sets are never copied), written with vectored writes.

use std::collections::VecDeque;
use std::io::{self, ErrorKind, IoSlice, Write};

use bytes::Bytes;

use crate::MAX_IOVECS;

/// Chunks not yet written, and how much of the first one was.
#[derive(Debug, Default)]
pub struct OutQueue {
    chunks: VecDeque<Bytes>,
    /// Bytes of the front chunk already written.
    written: usize,
}

impl OutQueue {
    /// Queues `chunks` after what is queued. Empty chunks are left out: a vectored write of
    /// nothing but them would look like a broken socket.
    pub fn push(&mut self, chunks: impl IntoIterator<Item = Bytes>) {
        self.chunks.extend(chunks.into_iter().filter(|b| !b.is_empty()));
    }

    /// Whether everything queued is written.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// How many chunks are (wholly or partly) unwritten.
    #[must_use]
    pub fn len(&self) -> usize {
        self.chunks.len()
    }

    /// The unwritten bytes, as at most [`MAX_IOVECS`] slices for one vectored write.
    #[must_use]
    pub fn slices(&self) -> Vec<IoSlice<'_>> {
        let mut chunks = self.chunks.iter().take(MAX_IOVECS);
        let first = chunks.next().map(|b| &b[self.written..]);
        first.into_iter().chain(chunks.map(|b| &b[..])).map(IoSlice::new).collect()
    }

    /// Drops the first `n` unwritten bytes: a write took them.
    pub fn advance(&mut self, mut n: usize) {
        while n > 0 {
            let Some(front) = self.chunks.front() else { return };
            let left = front.len() - self.written;
            if n < left {
                self.written += n;
                return;
            }
            n -= left;
            self.chunks.pop_front();
            self.written = 0;
        }
    }

    /// Writes what a non-blocking `w` takes now, until the queue is empty or `w` would block;
    /// returns how many bytes went out. An error (a write of nothing included) means the
    /// connection is broken.
    pub fn write_to(&mut self, w: &mut impl Write) -> io::Result<usize> {
        let mut total = 0;
        while !self.is_empty() {
            match w.write_vectored(&self.slices()) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(n) => {
                    total += n;
                    self.advance(n);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A socket that takes at most `cap` bytes a call, then would block once `budget` is spent.
    struct Trickle {
        got: Vec<u8>,
        cap: usize,
        budget: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.write_vectored(&[IoSlice::new(buf)])
        }

        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            if self.budget == 0 {
                return Err(ErrorKind::WouldBlock.into());
            }
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(self.cap.min(self.budget) - n);
                self.got.extend_from_slice(&b[..take]);
                n += take;
                if n == self.cap.min(self.budget) {
                    break;
                }
            }
            self.budget -= n;
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn partial_writes_resume_mid_chunk_and_keep_the_order() {
        let mut q = OutQueue::default();
        q.push([Bytes::from_static(b"hello "), Bytes::from_static(b""), Bytes::from_static(b"world")]);
        q.push([Bytes::from_static(b"!")]);
        let mut sock = Trickle { got: Vec::new(), cap: 4, budget: 7 };
        assert_eq!(q.write_to(&mut sock).unwrap(), 7, "stops when the socket would block");
        assert_eq!(q.len(), 2);
        sock.budget = usize::MAX;
        assert_eq!(q.write_to(&mut sock).unwrap(), 5);
        assert!(q.is_empty());
        assert_eq!(sock.got, b"hello world!");
    }
}
