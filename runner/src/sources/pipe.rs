//! An in-process pipe between threads: a `Write` half that sends chunks and
//! a `Read` half that receives them, with a bounded number of chunks in
//! flight, so memory stays flat however much goes through. An output read
//! from the staged tree goes through one, as a tar, to the extraction.

use std::io::{self, Read, Write};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

/// Bytes per chunk.
const CHUNK: usize = 256 * 1024;
/// Chunks in flight.
const DEPTH: usize = 8;

/// The writing half. Dropping it (or [`Writer::finish`]) is end of stream.
pub struct Writer {
    buf: Vec<u8>,
    to: SyncSender<Vec<u8>>,
}

/// The reading half.
pub struct Reader {
    from: Receiver<Vec<u8>>,
    cur: Vec<u8>,
    pos: usize,
}

/// A connected pair.
pub fn pipe() -> (Writer, Reader) {
    let (to, from) = sync_channel(DEPTH);
    (Writer { buf: Vec::with_capacity(CHUNK), to }, Reader { from, cur: Vec::new(), pos: 0 })
}

impl Writer {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.to
            .send(chunk)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the reading side of the pipe stopped"))
    }

    /// Sends what is buffered and ends the stream; an error if a reader
    /// stopped before the end.
    pub fn finish(mut self) -> io::Result<()> {
        self.send()
    }
}

impl Write for Writer {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = CHUNK - self.buf.len();
        let n = data.len().min(room);
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        let _ = self.send();
    }
}

impl Read for Reader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.cur.len() {
            match self.from.recv() {
                Ok(chunk) => {
                    self.cur = chunk;
                    self.pos = 0;
                }
                // The writer is gone: end of stream.
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.cur.len() - self.pos);
        out[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reader_sees_every_byte_in_order() {
        let data: Vec<u8> = (0..3 * CHUNK + 17).map(|i| (i % 251) as u8).collect();
        let (mut w, mut r) = pipe();
        let expected = data.clone();
        let reader = std::thread::spawn(move || {
            let mut v = Vec::new();
            r.read_to_end(&mut v).unwrap();
            v
        });
        for piece in data.chunks(1000) {
            w.write_all(piece).unwrap();
        }
        w.finish().unwrap();
        assert_eq!(reader.join().unwrap(), expected);
    }

    #[test]
    fn a_stopped_reader_is_a_broken_pipe() {
        let (mut w, r) = pipe();
        drop(r);
        let err = w.write_all(&vec![0; 2 * CHUNK]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
    }
}
