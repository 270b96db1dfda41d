//! What distrorun prints: asked-for output on stdout, where a closed
//! stdout is not worth an error, and the progress of a long unpack on
//! stderr.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use distrorun_engine::Error;
use serde::Serialize;

use crate::tree::limits::human_bytes;
use crate::tree::unpack::Progress;

/// Writes asked-for output to stdout. A reader that went away (`| head`)
/// is not worth an error: what it wanted, it has.
pub fn print(text: &str) {
    let _ = std::io::stdout().write_all(text.as_bytes());
}

/// `value` as pretty JSON on stdout, for scripts.
pub fn print_json(value: &impl Serialize) -> Result<(), Error> {
    let mut out =
        serde_json::to_string_pretty(value).map_err(|e| Error::msg(format!("cannot write JSON: {e}")))?;
    out.push('\n');
    print(&out);
    Ok(())
}

/// Paths in JSON: as text; a byte that is not UTF-8 shows as U+FFFD, as in
/// every other message distrorun prints.
pub fn text(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// Counts the bytes read from the archive file, for the progress bar.
pub struct CountingReader<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R> CountingReader<R> {
    pub fn new(inner: R, count: Arc<AtomicU64>) -> Self {
        CountingReader { inner, count }
    }
}

impl<R: std::io::Read> std::io::Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// A one-line progress bar on stderr, only when stderr is a terminal and
/// not `-q`: the archive read so far against its size, and the entries and
/// bytes written.
pub struct Bar {
    enabled: bool,
    total: u64,
    read: Arc<AtomicU64>,
    entries: u64,
    bytes: u64,
    last: Instant,
    drawn: bool,
}

impl Bar {
    pub fn new(quiet: bool, total: u64) -> Bar {
        use std::io::IsTerminal;
        Bar {
            enabled: !quiet && std::io::stderr().is_terminal(),
            total,
            read: Arc::default(),
            entries: 0,
            bytes: 0,
            last: Instant::now(),
            drawn: false,
        }
    }

    pub fn read_counter(&self) -> Arc<AtomicU64> {
        self.read.clone()
    }

    #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    fn draw(&mut self) {
        const WIDTH: usize = 30;
        // A stream of unknown length (mmdebstrap's) has counts but no bar.
        if self.total == 0 {
            eprint!("\r\x1b[Kunpacking: {} entries, {}", self.entries, human_bytes(self.bytes));
        } else {
            let fraction = (self.read.load(Ordering::Relaxed) as f64 / self.total as f64).min(1.0);
            let filled = (fraction * WIDTH as f64) as usize;
            eprint!(
                "\r\x1b[Kunpacking [{}{}] {:3.0}%  {} entries, {}",
                "#".repeat(filled),
                " ".repeat(WIDTH - filled),
                fraction * 100.0,
                self.entries,
                human_bytes(self.bytes)
            );
        }
        self.drawn = true;
    }

    pub fn clear(&mut self) {
        if self.drawn {
            eprint!("\r\x1b[K");
            self.drawn = false;
        }
    }
}

impl Progress for Bar {
    fn advance(&mut self, entries: u64, bytes: u64) {
        self.entries += entries;
        self.bytes += bytes;
        if self.enabled && self.last.elapsed().as_millis() >= 100 {
            self.last = Instant::now();
            self.draw();
        }
    }
}
