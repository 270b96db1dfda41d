//! Images as sources of layers, wherever they are: an OCI layout or
//! archive on disk, or a registry. Both go through [`apply`], which feeds
//! each layer, checked as it streams, into the one unpacker, while the
//! next layers are already being read.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io::{self, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use distrorun_engine::Error;

use super::oci;
use super::tarball;
use crate::registry;
use crate::tree::limits::human_bytes;
use crate::tree::unpack::{Progress, Unpacker, Whiteouts};

/// An image's layers, in the order they are applied.
pub trait ImageSource: Send + Sync {
    /// Names the image in messages.
    fn what(&self) -> &str;
    /// Each layer's blob size, where the image says it.
    fn sizes(&self) -> Vec<Option<u64>>;
    /// Each layer's blob digest, which names the layer in a tree's layer
    /// record.
    fn digests(&self) -> Vec<String>;
    /// A stream of layer `n`'s blob.
    fn open_layer(&self, n: usize) -> Result<Box<dyn LayerStream>, Error>;
    /// What the summary line adds: where the layers came from.
    fn note(&self) -> Option<String> {
        None
    }
    /// What the user must know about the result even with `--quiet`.
    fn warning(&self) -> Option<String> {
        None
    }
}

/// A layer's blob, hashed as it is read.
pub trait LayerStream: Read + Send {
    /// Once the last byte is read: whether the blob matched its digest and
    /// size.
    fn finish(self: Box<Self>) -> Result<(), Error>;
}

struct OciLayer {
    checked: oci::Checked<Box<dyn Read + Send>>,
    what: String,
}

impl Read for OciLayer {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.checked.read(buf)
    }
}

impl LayerStream for OciLayer {
    fn finish(self: Box<Self>) -> Result<(), Error> {
        self.checked.verify(&self.what)
    }
}

impl ImageSource for oci::Image {
    fn what(&self) -> &str {
        &self.what
    }

    fn sizes(&self) -> Vec<Option<u64>> {
        self.layers.iter().map(oci::Layer::size).collect()
    }

    fn digests(&self) -> Vec<String> {
        self.layers.iter().map(|l| l.digest().to_owned()).collect()
    }

    fn open_layer(&self, n: usize) -> Result<Box<dyn LayerStream>, Error> {
        Ok(Box::new(OciLayer { checked: self.layer(&self.layers[n])?, what: self.what.clone() }))
    }
}

struct RemoteLayer {
    layer: registry::Layer,
    what: String,
}

impl Read for RemoteLayer {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.layer.read(buf)
    }
}

impl LayerStream for RemoteLayer {
    fn finish(mut self: Box<Self>) -> Result<(), Error> {
        let drained = io::copy(&mut self.layer, &mut io::sink());
        let failure = match drained {
            Ok(_) => self.layer.failure(),
            Err(e) => Some(self.layer.failure().unwrap_or_else(|| e.to_string())),
        };
        match failure {
            Some(why) => Err(Error::msg(format!("{}: {why}", self.what))),
            None => Ok(()),
        }
    }
}

impl ImageSource for registry::Remote {
    fn what(&self) -> &str {
        &self.what
    }

    fn sizes(&self) -> Vec<Option<u64>> {
        self.layers.iter().map(|d| Some(d.size)).collect()
    }

    fn digests(&self) -> Vec<String> {
        self.layers.iter().map(|d| d.digest.clone()).collect()
    }

    fn open_layer(&self, n: usize) -> Result<Box<dyn LayerStream>, Error> {
        Ok(Box::new(RemoteLayer { layer: self.layer(n)?, what: self.what.clone() }))
    }

    fn note(&self) -> Option<String> {
        Some(self.transfer.summary())
    }

    fn warning(&self) -> Option<String> {
        self.foreign()
    }
}

/// Layers read at the same time: the one being unpacked and the next ones,
/// each up to [`AHEAD`] chunks ahead of the unpacker.
const IN_FLIGHT: usize = 3;
const CHUNK: usize = 1 << 20;
const AHEAD: usize = 48;

/// How a layer's reading ended.
enum Fetched {
    /// Read to the end and checked.
    Complete,
    /// The unpacker stopped taking chunks before the end.
    Abandoned,
}

struct Fetch {
    rx: Receiver<io::Result<Vec<u8>>>,
    handle: JoinHandle<Result<Fetched, Error>>,
}

fn start(source: Arc<dyn ImageSource>, n: usize, counter: Arc<AtomicU64>) -> Fetch {
    let (tx, rx) = sync_channel(AHEAD);
    let handle = std::thread::spawn(move || fetch(&*source, n, &counter, &tx));
    Fetch { rx, handle }
}

/// Reads layer `n` into the channel in chunks, then checks it. A failure
/// is sent down the channel too, so that the unpacker stops at once.
fn fetch(
    source: &dyn ImageSource,
    n: usize,
    counter: &AtomicU64,
    tx: &SyncSender<io::Result<Vec<u8>>>,
) -> Result<Fetched, Error> {
    let failed = |e: Error| {
        let _ = tx.send(Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string())));
        e
    };
    let mut stream = source.open_layer(n).map_err(failed)?;
    loop {
        let mut chunk = vec![0u8; CHUNK];
        let mut filled = 0;
        while filled < CHUNK {
            match stream.read(&mut chunk[filled..]) {
                Ok(0) => break,
                Ok(got) => {
                    filled += got;
                    counter.fetch_add(got as u64, Ordering::Relaxed);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // The stream's own check (for a registry's blob) or its
                // read error; finish() names it.
                Err(_) => {
                    return Err(failed(stream.finish().err().unwrap_or_else(|| read_failed(source, n))))
                }
            }
        }
        if filled == 0 {
            stream.finish().map_err(failed)?;
            return Ok(if tx.send(Ok(Vec::new())).is_ok() { Fetched::Complete } else { Fetched::Abandoned });
        }
        chunk.truncate(filled);
        if tx.send(Ok(chunk)).is_err() {
            return Ok(Fetched::Abandoned);
        }
    }
}

fn read_failed(source: &dyn ImageSource, n: usize) -> Error {
    Error::msg(format!("cannot read layer {} of {}", n + 1, source.what()))
}

/// Builds the first layers some other way (from an old tree), before the
/// rest are applied; says whether it did, or undid what it wrote.
pub type Prelude<'a> = dyn FnMut(&mut Unpacker) -> Result<bool, Error> + 'a;

/// Applies the image's layers in order. Each is read (and, from a
/// registry, downloaded) on a thread of its own, decompressed on another,
/// and unpacked here; the next layers are read meanwhile. A layer that
/// fails its check fails the whole apply, with the check's message rather
/// than the unpacker's.
///
/// With `from` > 0, `prelude` builds layers before `from` while layer
/// `from` and the next are already being fetched; should it not, every
/// layer is applied.
pub fn apply(
    unpacker: &mut Unpacker,
    source: &Arc<dyn ImageSource>,
    bar: &mut ImageBar,
    from: usize,
    prelude: &mut Prelude,
) -> Result<(), Error> {
    let mut pending = VecDeque::new();
    let mut started = from;
    start_ahead(source, bar, &mut pending, &mut started, from);
    if from > 0 && !prelude(unpacker)? {
        // What was fetched ahead is dropped: its threads stop at their
        // next chunk.
        pending.clear();
        let (mut pending, mut started) = (VecDeque::new(), 0);
        return apply_layers(unpacker, source, bar, 0, &mut pending, &mut started);
    }
    apply_layers(unpacker, source, bar, from, &mut pending, &mut started)
}

/// Starts fetching the layers up to [`IN_FLIGHT`] past `n`.
fn start_ahead(
    source: &Arc<dyn ImageSource>,
    bar: &ImageBar,
    pending: &mut VecDeque<Fetch>,
    started: &mut usize,
    n: usize,
) {
    let count = bar.layers.len();
    while *started < count && *started < n + IN_FLIGHT {
        pending.push_back(start(source.clone(), *started, bar.layers[*started].0.clone()));
        *started += 1;
    }
}

fn apply_layers(
    unpacker: &mut Unpacker,
    source: &Arc<dyn ImageSource>,
    bar: &mut ImageBar,
    from: usize,
    pending: &mut VecDeque<Fetch>,
    started: &mut usize,
) -> Result<(), Error> {
    for n in from..bar.layers.len() {
        start_ahead(source, bar, pending, started, n);
        let Some(Fetch { rx, handle }) = pending.pop_front() else { break };
        let what = format!("layer {} of {}", n + 1, source.what());
        unpacker.begin_layer(n);
        // A fetch that ends without its end chunk has failed, and says so
        // when joined.
        let chunks = tarball::ReadAhead::receiving(rx);
        let result = tarball::decompressed(chunks, &what).and_then(|(stream, _)| {
            unpacker.unpack(tarball::read_ahead(stream), &what, Whiteouts::Apply, bar)
        });
        // A fetch stalled in the network is not waited for once a signal
        // stops the create; the process is about to end.
        crate::tree::interrupt::check()?;
        let fetched = handle.join().unwrap_or_else(|_| Err(read_failed(&**source, n)));
        match (fetched, result) {
            (Err(e), _) | (Ok(_), Err(e)) => return Err(e),
            (Ok(Fetched::Abandoned), Ok(())) => {
                return Err(Error::msg(format!("{what} has data after the end of its archive")))
            }
            (Ok(Fetched::Complete), Ok(())) => {}
        }
    }
    Ok(())
}

/// Progress on a terminal: each layer's bytes against its size, the total,
/// and the entries written.
pub struct ImageBar {
    enabled: bool,
    layers: Vec<(Arc<AtomicU64>, Option<u64>)>,
    entries: u64,
    last: Instant,
    drawn: bool,
}

impl ImageBar {
    pub fn new(quiet: bool, sizes: &[Option<u64>]) -> ImageBar {
        use std::io::IsTerminal;
        ImageBar {
            enabled: !quiet && io::stderr().is_terminal(),
            layers: sizes.iter().map(|s| (Arc::default(), *s)).collect(),
            entries: 0,
            last: Instant::now(),
            drawn: false,
        }
    }

    fn draw(&mut self) {
        let mut line = String::from("\r\x1b[K");
        let (mut read, mut total) = (0, 0);
        for (n, (counter, size)) in self.layers.iter().enumerate() {
            let got = counter.load(Ordering::Relaxed);
            read += got;
            total += size.unwrap_or(0);
            // Finished layers make room for the ones still going.
            if size.is_some_and(|s| got >= s) {
                continue;
            }
            if got > 0 {
                let _ = write!(line, "[{}] {}  ", n + 1, amount(got, *size));
            }
        }
        let _ = write!(
            line,
            "total {} ({} layers), {} entries",
            amount(read, (total > 0).then_some(total)),
            self.layers.len(),
            self.entries
        );
        eprint!("{line}");
        self.drawn = true;
    }

    pub fn clear(&mut self) {
        if self.drawn {
            eprint!("\r\x1b[K");
            self.drawn = false;
        }
    }
}

fn amount(got: u64, size: Option<u64>) -> String {
    match size {
        Some(size) => format!("{}/{}", human_bytes(got), human_bytes(size)),
        None => human_bytes(got),
    }
}

impl Progress for ImageBar {
    fn advance(&mut self, entries: u64, _bytes: u64) {
        self.entries += entries;
        if self.enabled && self.last.elapsed().as_millis() >= 100 {
            self.last = Instant::now();
            self.draw();
        }
    }
}
