//! Walks a tar stream's blocks as they pass on their way to the tar
//! reader, and stops the stream at an extension header that is too large.
//!
//! The tar reader reads a GNU long name or link (`L`, `K`) and a PAX header
//! (`x`, `g`) whole into memory before the member they describe: a few
//! kilobytes of compressed archive can declare one of several gigabytes.
//! Nothing legitimate comes near [`MAX_EXTENSION`] (a path is at most 4 KiB,
//! a PAX header holds a few records and extended attributes of a few
//! kilobytes), so a larger one is refused at its header, before a byte of it
//! is buffered.
//!
//! To know where headers are it follows the stream as the reader does: a
//! member's data is its size rounded up to a block, the size a PAX `size`
//! record gives wins over the header's, and an old-GNU sparse member is
//! followed by its extension headers.

use std::io::{self, Read};

/// The largest extension header accepted.
pub const MAX_EXTENSION: u64 = 1 << 20;

const BLOCK: usize = 512;

/// Why the guard stopped a stream; carried inside the `io::Error` the
/// reader sees, and found again by [`refusal`].
#[derive(Debug)]
pub struct Refusal(pub String);

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refusal {}

/// The guard's refusal inside `e`, if it is one.
pub fn refusal(e: &io::Error) -> Option<&Refusal> {
    e.get_ref().and_then(|inner| inner.downcast_ref::<Refusal>())
}

enum Phase {
    /// Collecting a header block.
    Header,
    /// Collecting an old-GNU sparse extension block.
    SparseExt,
    /// Passing `left` bytes of data (padding included); a PAX header's are
    /// kept, for its `size` record.
    Data { left: u64, pax: Option<Vec<u8>> },
    /// Past the end-of-archive block: what follows is not tar.
    Ended,
}

pub struct TarGuard<R> {
    inner: R,
    phase: Phase,
    block: [u8; BLOCK],
    filled: usize,
    /// A PAX `size` for the next member that is not an extension header.
    pax_size: Option<u64>,
    /// An old-GNU sparse member's size, while its extension blocks pass.
    header_size: Option<u64>,
}

impl<R> TarGuard<R> {
    pub fn new(inner: R) -> TarGuard<R> {
        TarGuard {
            inner,
            phase: Phase::Header,
            block: [0; BLOCK],
            filled: 0,
            pax_size: None,
            header_size: None,
        }
    }

    /// Follows `bytes`, the next bytes of the stream.
    fn follow(&mut self, mut bytes: &[u8]) -> Result<(), Refusal> {
        while !bytes.is_empty() {
            match &mut self.phase {
                Phase::Ended => return Ok(()),
                Phase::Data { left, pax } => {
                    let take = usize::try_from(*left).unwrap_or(usize::MAX).min(bytes.len());
                    if let Some(pax) = pax {
                        pax.extend_from_slice(&bytes[..take]);
                    }
                    bytes = &bytes[take..];
                    *left -= take as u64;
                    if *left == 0 {
                        if let Some(records) = pax.take() {
                            self.pax_size = pax_size(&records);
                        }
                        self.phase = Phase::Header;
                    }
                }
                Phase::Header | Phase::SparseExt => {
                    let take = (BLOCK - self.filled).min(bytes.len());
                    self.block[self.filled..self.filled + take].copy_from_slice(&bytes[..take]);
                    self.filled += take;
                    bytes = &bytes[take..];
                    if self.filled == BLOCK {
                        self.filled = 0;
                        self.block_done()?;
                    }
                }
            }
        }
        Ok(())
    }

    fn block_done(&mut self) -> Result<(), Refusal> {
        if matches!(self.phase, Phase::SparseExt) {
            if self.block[504] == 0 {
                self.phase = data_phase(self.header_size.take().unwrap_or(0), None);
            }
            return Ok(());
        }
        let h = &self.block;
        // The end of the archive, or a block that is no header at all,
        // which the tar reader reports as corrupt: nothing more to follow.
        if h.iter().all(|b| *b == 0) || !checksum_ok(h) {
            self.phase = Phase::Ended;
            return Ok(());
        }
        let kind = h[156];
        let mut size = size_field(&h[124..136]);
        let extension = matches!(kind, b'L' | b'K' | b'x' | b'g');
        if extension {
            if size > MAX_EXTENSION {
                let what = match kind {
                    b'L' => "a GNU long name",
                    b'K' => "a GNU long link target",
                    b'x' => "a PAX header",
                    _ => "a PAX global header",
                };
                return Err(Refusal(format!(
                    "{what} of {size} bytes, more than the {MAX_EXTENSION} bytes distrorun accepts"
                )));
            }
        } else if let Some(pax) = self.pax_size.take() {
            size = pax;
        }
        let pax = (kind == b'x').then(Vec::new);
        if kind == b'S' && h[482] != 0 {
            self.header_size = Some(size);
            self.phase = Phase::SparseExt;
        } else {
            self.phase = data_phase(size, pax);
        }
        Ok(())
    }
}

fn data_phase(size: u64, pax: Option<Vec<u8>>) -> Phase {
    match size.div_ceil(BLOCK as u64).saturating_mul(BLOCK as u64) {
        0 => Phase::Header,
        padded => Phase::Data { left: padded, pax },
    }
}

/// Whether a header's checksum is right, as the tar reader checks it: the
/// unsigned sum of its bytes with the checksum field taken as spaces.
fn checksum_ok(h: &[u8; BLOCK]) -> bool {
    let sum: u32 = h[..148].iter().chain(&h[156..]).map(|b| u32::from(*b)).sum::<u32>() + 8 * u32::from(b' ');
    let field = &h[148..156];
    let end = field.iter().position(|b| *b == 0).unwrap_or(field.len());
    std::str::from_utf8(&field[..end])
        .ok()
        .and_then(|s| u32::from_str_radix(s.trim(), 8).ok())
        .is_some_and(|want| want == sum)
}

/// A header's size field: octal, or base-256 when its first bit is set.
fn size_field(field: &[u8]) -> u64 {
    if field[0] & 0x80 != 0 {
        return field[1..].iter().fold(0u64, |n, b| n.saturating_mul(256).saturating_add(u64::from(*b)));
    }
    let end = field.iter().position(|b| *b == 0).unwrap_or(field.len());
    std::str::from_utf8(&field[..end]).ok().and_then(|s| u64::from_str_radix(s.trim(), 8).ok()).unwrap_or(0)
}

/// The first `size` record of a PAX header, as the tar reader takes it.
fn pax_size(records: &[u8]) -> Option<u64> {
    for ext in tar::PaxExtensions::new(records) {
        let ext = ext.ok()?;
        if ext.key_bytes() == b"size" {
            return ext.value().ok()?.parse().ok();
        }
    }
    None
}

impl<R: Read> Read for TarGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.follow(&buf[..n]).map_err(io::Error::other)?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::{refusal, TarGuard, MAX_EXTENSION};
    use std::io::Read;

    fn header(kind: u8, size: u64) -> Vec<u8> {
        let mut h = tar::Header::new_gnu();
        h.set_path("x").unwrap();
        h.set_size(size);
        h.set_entry_type(tar::EntryType::new(kind));
        h.set_cksum();
        h.as_bytes().to_vec()
    }

    #[test]
    fn a_huge_long_name_is_refused_at_its_header() {
        let stream = header(b'L', 3 << 30);
        let mut out = Vec::new();
        let err = TarGuard::new(stream.as_slice()).read_to_end(&mut out).unwrap_err();
        assert!(refusal(&err).is_some_and(|r| r.0.contains("GNU long name")), "{err}");
    }

    #[test]
    fn members_are_followed_past_their_data() {
        // A file whose data looks like a huge long-name header must not be
        // taken for one, and the next real header is still checked.
        let mut stream = header(b'0', 512);
        stream.extend(header(b'L', 3 << 30));
        stream.extend(header(b'K', MAX_EXTENSION + 1));
        let mut out = Vec::new();
        let err = TarGuard::new(stream.as_slice()).read_to_end(&mut out).unwrap_err();
        assert!(refusal(&err).is_some_and(|r| r.0.contains("long link")), "{err}");
    }
}
