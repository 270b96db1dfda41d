//! Sparse files: holes stay holes.
//!
//! Every file's data is written by [`HoleWriter`], which seeks over blocks
//! of zeros instead of writing them, as `cp --sparse=auto` and `tar -S`
//! extraction do; an old-GNU sparse member (type `S`), which the tar reader
//! expands into zeros, so comes out with its holes.
//!
//! PAX sparse members, which GNU tar writes with `--sparse --format=posix`,
//! the tar reader does not expand at all: it hands over the sparse map and
//! the data chunks as if they were the file, under a made-up name
//! (`GNUSparseFile.0/NAME`). [`PaxSparse`] reads the three versions of the
//! format (0.0, 0.1 and 1.0, as GNU tar's manual describes them) and writes
//! each chunk where it belongs.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;

/// Holes are found at this granularity, a file system block.
const HOLE: usize = 4096;
static ZEROS: [u8; HOLE] = [0; HOLE];
const BUFFER: usize = 256 << 10;

/// The most chunks a sparse map may list: 16 bytes of memory each.
const MAX_CHUNKS: u64 = 1 << 20;

/// Writes a file's data at given offsets, leaving blocks of zeros
/// unwritten; [`HoleWriter::finish`] sets the final size, which makes the
/// trailing hole.
pub struct HoleWriter<'a> {
    file: &'a File,
    buf: Vec<u8>,
    /// Where the last write ended: the size the file has without a hole
    /// at its end.
    written_end: u64,
}

impl<'a> HoleWriter<'a> {
    pub fn new(file: &'a File) -> HoleWriter<'a> {
        HoleWriter { file, buf: vec![0; BUFFER], written_end: 0 }
    }

    /// Copies up to `len` bytes of `from` to offset `at`; returns how many
    /// there were (fewer when `from` ends early).
    pub fn copy(&mut self, from: &mut impl Read, mut at: u64, len: u64) -> io::Result<u64> {
        let mut done = 0;
        while done < len {
            let want = usize::try_from(len - done).unwrap_or(usize::MAX).min(self.buf.len());
            let n = match from.read(&mut self.buf[..want]) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            // Blocks are aligned to the file, so that a skipped one is a
            // whole block the file system can leave unallocated; runs of
            // blocks with data go out in one write.
            let (mut start, mut run) = (0, None);
            while start < n {
                let to_boundary = HOLE - usize::try_from((at + start as u64) % HOLE as u64).unwrap_or(0);
                let end = (start + to_boundary).min(n);
                // A comparison with a block of zeros is a memcmp, far
                // faster than looking at each byte.
                let zero = self.buf[start..end] == ZEROS[..end - start];
                match (zero, run) {
                    (false, None) => run = Some(start),
                    (true, Some(from)) => {
                        self.file.write_all_at(&self.buf[from..start], at + from as u64)?;
                        self.written_end = at + start as u64;
                        run = None;
                    }
                    _ => {}
                }
                start = end;
            }
            if let Some(from) = run {
                self.file.write_all_at(&self.buf[from..n], at + from as u64)?;
                self.written_end = at + n as u64;
            }
            at += n as u64;
            done += n as u64;
        }
        Ok(done)
    }

    /// Sets the file's size: a hole up to it where nothing was written.
    pub fn finish(&self, size: u64) -> io::Result<()> {
        if size > self.written_end {
            self.file.set_len(size)?;
        }
        Ok(())
    }
}

/// A PAX sparse member's real name, size and map.
#[derive(Debug)]
pub struct PaxSparse {
    pub name: Option<Vec<u8>>,
    pub real_size: u64,
    /// `(offset, length)` of each data chunk; for format 1.0 it is read
    /// from the start of the member's data.
    map: Option<Vec<(u64, u64)>>,
}

impl PaxSparse {
    /// The sparse description in a member's PAX records, if it has one.
    pub fn of<R: Read>(entry: &mut tar::Entry<R>) -> Result<Option<PaxSparse>, String> {
        let Ok(Some(exts)) = entry.pax_extensions() else { return Ok(None) };
        let mut sparse = false;
        let (mut major, mut name, mut size, mut map_text) = (None, None, None, None);
        let mut pairs: Vec<u64> = Vec::new();
        for ext in exts {
            let ext = ext.map_err(|e| format!("a PAX header is malformed: {e}"))?;
            let Some(key) = ext.key_bytes().strip_prefix(b"GNU.sparse.") else { continue };
            sparse = true;
            let number = || -> Result<u64, String> {
                ext.value().ok().and_then(|v| v.parse().ok()).ok_or_else(|| {
                    format!("its sparse record {} is not a number", String::from_utf8_lossy(key))
                })
            };
            match key {
                b"major" => major = Some(number()?),
                b"name" => name = Some(ext.value_bytes().to_vec()),
                b"realsize" | b"size" => size = Some(number()?),
                b"map" => map_text = Some(ext.value_bytes().to_vec()),
                b"offset" | b"numbytes" => {
                    if pairs.len() as u64 >= 2 * MAX_CHUNKS {
                        return Err("its sparse map has too many chunks".into());
                    }
                    pairs.push(number()?);
                }
                _ => {}
            }
        }
        if !sparse {
            return Ok(None);
        }
        let real_size = size.ok_or("it is sparse but declares no real size")?;
        let map = if major == Some(1) {
            None
        } else if let Some(text) = map_text {
            Some(numbers_to_map(&parse_numbers(&text, b',')?)?)
        } else {
            Some(numbers_to_map(&pairs)?)
        };
        Ok(Some(PaxSparse { name, real_size, map }))
    }

    /// The chunks' total length, what the file takes on disk.
    pub fn data_len(&self) -> Option<u64> {
        self.map.as_ref().map(|m| m.iter().map(|(_, len)| len).sum())
    }

    /// Writes the member's chunks into `file`, checking the map against
    /// the real size and the data the member holds.
    pub fn write(mut self, entry: &mut impl Read, stored: u64, file: &File) -> Result<(), String> {
        let mut consumed = 0;
        let map = if let Some(map) = self.map.take() {
            map
        } else {
            let (map, header_len) = read_map(entry)?;
            consumed = header_len;
            map
        };
        let mut writer = HoleWriter::new(file);
        let mut end = 0u64;
        for (offset, len) in map {
            let chunk_end = offset.checked_add(len).ok_or("its sparse map overflows")?;
            if offset < end || chunk_end > self.real_size {
                return Err("its sparse map has chunks out of order or past the file's end".into());
            }
            let got = writer.copy(entry, offset, len).map_err(|e| e.to_string())?;
            if got != len {
                return Err("it is truncated: its data ends before its sparse map does".into());
            }
            consumed += len;
            end = chunk_end;
        }
        if consumed != stored {
            return Err(format!("its sparse map accounts for {consumed} of its {stored} bytes"));
        }
        writer.finish(self.real_size).map_err(|e| e.to_string())
    }
}

fn numbers_to_map(numbers: &[u64]) -> Result<Vec<(u64, u64)>, String> {
    if numbers.len() % 2 != 0 {
        return Err("its sparse map has an offset without a length".into());
    }
    Ok(numbers.chunks(2).map(|p| (p[0], p[1])).collect())
}

fn parse_numbers(text: &[u8], sep: u8) -> Result<Vec<u64>, String> {
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let numbers: Vec<u64> = text
        .split(|b| *b == sep)
        .map(|n| std::str::from_utf8(n).ok().and_then(|n| n.parse().ok()))
        .collect::<Option<_>>()
        .ok_or("its sparse map is not a list of numbers")?;
    if numbers.len() as u64 > 2 * MAX_CHUNKS {
        return Err("its sparse map has too many chunks".into());
    }
    Ok(numbers)
}

/// Format 1.0: the map leads the data, as decimal lines (the count, then an
/// offset and a length per chunk), padded to a 512-byte block.
fn read_map(entry: &mut impl Read) -> Result<(Vec<(u64, u64)>, u64), String> {
    let mut read = 0u64;
    let mut line = |read: &mut u64| -> Result<u64, String> {
        let mut digits = Vec::new();
        loop {
            let mut byte = [0u8];
            entry.read_exact(&mut byte).map_err(|_| "its sparse map is truncated".to_owned())?;
            *read += 1;
            match byte[0] {
                b'\n' => break,
                b'0'..=b'9' if digits.len() < 20 => digits.push(byte[0]),
                _ => return Err("its sparse map is not a list of numbers".into()),
            }
        }
        std::str::from_utf8(&digits)
            .ok()
            .and_then(|d| d.parse().ok())
            .ok_or_else(|| "its sparse map is not a list of numbers".to_owned())
    };
    let count = line(&mut read)?;
    if count > MAX_CHUNKS {
        return Err("its sparse map has too many chunks".into());
    }
    let mut map = Vec::new();
    for _ in 0..count {
        let offset = line(&mut read)?;
        let len = line(&mut read)?;
        map.push((offset, len));
    }
    let padded = read.div_ceil(512) * 512;
    io::copy(&mut entry.take(padded - read), &mut io::sink()).map_err(|e| e.to_string())?;
    Ok((map, padded))
}

#[cfg(test)]
mod tests {
    use super::{read_map, HoleWriter};

    #[test]
    fn zeros_become_holes() {
        let dir = std::env::temp_dir().join(format!("distrorun-sparse-{}", std::process::id()));
        let file =
            std::fs::File::options().read(true).write(true).create(true).truncate(true).open(&dir).unwrap();
        let mut data = vec![0u8; 1 << 20];
        data[5000] = 1;
        let mut w = HoleWriter::new(&file);
        assert_eq!(w.copy(&mut data.as_slice(), 0, 1 << 20).unwrap(), 1 << 20);
        w.finish(1 << 20).unwrap();
        let back = std::fs::read(&dir).unwrap();
        std::fs::remove_file(&dir).unwrap();
        assert_eq!(back, data);
    }

    #[test]
    fn the_1_0_map_is_read_and_its_padding_skipped() {
        let mut data = b"2\n0\n5\n8192\n3\n".to_vec();
        data.resize(512, 0);
        data.extend_from_slice(b"helloabc");
        let mut r = data.as_slice();
        let (map, len) = read_map(&mut r).unwrap();
        assert_eq!((map, len), (vec![(0, 5), (8192, 3)], 512));
        assert_eq!(r, b"helloabc");
    }
}
