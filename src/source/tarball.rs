//! A rootfs tarball as a tar stream: the compression is told by the first
//! bytes of the file, never by its name.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};

use distrorun_engine::Error;

/// The compressions rootfs tarballs and image layers come in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Xz,
    Zstd,
}

impl Compression {
    /// From the stream's first bytes (its magic number).
    pub fn detect(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
            Compression::Xz
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

/// Buffer size for reading archives: large reads keep the decompressors
/// and the file system busy with few system calls.
const BUFFER: usize = 1 << 20;

/// `reader` decompressed as its magic number says.
pub fn decompressed<'a, R: Read + Send + 'a>(
    reader: R,
    what: &str,
) -> Result<(Box<dyn Read + Send + 'a>, Compression), Error> {
    let mut buffered = BufReader::with_capacity(BUFFER, reader);
    let head = buffered.fill_buf().map_err(|e| Error::msg(format!("cannot read {what}: {e}")))?;
    if head.is_empty() {
        return Err(Error::msg(format!("{what} is empty")));
    }
    let kind = Compression::detect(head);
    let stream: Box<dyn Read + Send + 'a> = match kind {
        Compression::None => Box::new(buffered),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buffered)),
        Compression::Xz => Box::new(xz2::bufread::XzDecoder::new_multi_decoder(buffered)),
        Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::with_buffer(buffered)
                .map_err(|e| Error::msg(format!("cannot read {what} as zstd: {e}")))?,
        ),
    };
    Ok((stream, kind))
}

/// Reads and decompresses `stream` on a thread of its own, a few chunks
/// ahead of the unpacker, so that decompression and the file system's work
/// overlap, as `tar --zstd` overlaps them with two processes.
pub fn read_ahead(mut stream: Box<dyn Read + Send>) -> ReadAhead {
    let (tx, rx) = std::sync::mpsc::sync_channel::<std::io::Result<Vec<u8>>>(4);
    std::thread::spawn(move || loop {
        let mut chunk = vec![0u8; CHUNK];
        let mut filled = 0;
        let result = loop {
            match stream.read(&mut chunk[filled..]) {
                Ok(0) => break Ok(()),
                Ok(n) => {
                    filled += n;
                    if filled == chunk.len() {
                        break Ok(());
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        chunk.truncate(filled);
        let end = filled == 0;
        // A closed channel means the unpacker stopped: nothing more to do.
        match result {
            Ok(()) if tx.send(Ok(chunk)).is_ok() && !end => {}
            Ok(()) => return,
            Err(e) => {
                let _ = tx.send(Err(e));
                return;
            }
        }
    });
    ReadAhead { rx, chunk: Vec::new(), pos: 0, done: false }
}

const CHUNK: usize = 1 << 20;

/// The reading end of [`read_ahead`], or of any channel of chunks. An
/// empty chunk is the end.
pub struct ReadAhead {
    rx: std::sync::mpsc::Receiver<std::io::Result<Vec<u8>>>,
    chunk: Vec<u8>,
    pos: usize,
    done: bool,
}

impl ReadAhead {
    /// Reads the chunks another thread sends.
    pub fn receiving(rx: std::sync::mpsc::Receiver<std::io::Result<Vec<u8>>>) -> ReadAhead {
        ReadAhead { rx, chunk: Vec::new(), pos: 0, done: false }
    }
}

impl Read for ReadAhead {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.chunk.len() {
            if self.done {
                return Ok(0);
            }
            // Woken now and then, so that a signal stops a reader whose
            // source has stalled.
            let received = loop {
                match self.rx.recv_timeout(std::time::Duration::from_millis(100)) {
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => crate::tree::interrupt::check_io()?,
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break Err(()),
                    Ok(received) => break Ok(received),
                }
            };
            match received {
                Ok(Ok(chunk)) => {
                    self.done = chunk.is_empty();
                    self.chunk = chunk;
                    self.pos = 0;
                }
                Ok(Err(e)) => {
                    self.done = true;
                    return Err(e);
                }
                Err(()) => {
                    self.done = true;
                    return Ok(0);
                }
            }
        }
        let n = buf.len().min(self.chunk.len() - self.pos);
        buf[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Opens a tarball as the caller.
pub fn open(path: &std::path::Path) -> Result<File, Error> {
    File::open(path).map_err(|e| crate::error::io(format!("open the tarball {}", path.display()), &e))
}

#[cfg(test)]
mod tests {
    use super::Compression;

    #[test]
    fn compression_is_told_by_content() {
        assert_eq!(Compression::detect(&[0x1f, 0x8b, 8, 0]), Compression::Gzip);
        assert_eq!(Compression::detect(b"\xfd7zXZ\0rest"), Compression::Xz);
        assert_eq!(Compression::detect(&[0x28, 0xb5, 0x2f, 0xfd, 0]), Compression::Zstd);
        assert_eq!(Compression::detect(b"etc/\0\0\0"), Compression::None);
    }
}
