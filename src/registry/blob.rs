//! A blob as a stream, checked against its digest and size while it is
//! read, and resumed where it broke off when the connection fails.

use std::io::{self, Read};
use std::sync::Arc;
use std::time::{Duration, Instant};

use distrorun_engine::Error;
use sha2::{Digest, Sha256};

use super::transport::{Client, Failure};

/// How often a broken transfer is resumed before the pull fails.
const RETRIES: u32 = 3;

pub struct Blob {
    client: Arc<Client>,
    digest: String,
    size: u64,
    /// Names the blob in messages.
    name: String,
    body: Option<Box<dyn Read + Send>>,
    hasher: Sha256,
    pos: u64,
    retries: u32,
    /// Where the bytes come from, after redirects, for messages.
    url: String,
    /// The pace check: time spent waiting in reads, and the bytes they
    /// brought, since the window opened. Time the unpacker keeps the
    /// reader waiting is not the server's slowness.
    window: (Duration, u64),
    /// The first failure, for a message of its own rather than the
    /// unpacker's "corrupt or truncated".
    pub failure: Option<String>,
}

impl Blob {
    pub fn open(client: Arc<Client>, digest: &str, size: u64, name: String) -> Result<Blob, Error> {
        let mut blob = Blob {
            client,
            digest: digest.to_owned(),
            size,
            name,
            body: None,
            hasher: Sha256::new(),
            pos: 0,
            retries: 0,
            url: String::new(),
            window: (Duration::ZERO, 0),
            failure: None,
        };
        blob.request().map_err(Error::msg)?;
        Ok(blob)
    }

    /// (Re)opens the blob at `pos`. A registry that ignores `Range` sends
    /// it all again, and what was read already is skipped.
    fn request(&mut self) -> Result<(), String> {
        let path = format!("/v2/{}/blobs/{}", self.client.reference.repository, self.digest);
        let (response, url) = self.client.get(&path, "*/*", self.pos, None).map_err(|f| match f {
            Failure::Status(404, _) => format!("the registry has no {}", self.name),
            f => f.message(&self.name),
        })?;
        self.url = url;
        self.window = (Duration::ZERO, 0);
        let partial = response.status() == 206;
        let mut body: Box<dyn Read + Send> = Box::new(response.into_reader());
        if self.pos > 0 && !partial {
            io::copy(&mut (&mut body).take(self.pos), &mut io::sink())
                .map_err(|e| format!("cannot fetch {}: {e}", self.name))?;
        }
        self.body = Some(body);
        Ok(())
    }

    fn fail(&mut self, why: String) -> io::Error {
        self.body = None;
        self.failure.get_or_insert(why.clone());
        io::Error::new(io::ErrorKind::InvalidData, why)
    }

    /// Gives the download up where it brought fewer than `--speed-limit`
    /// bytes a second over the last `--speed-time`, as curl does: a
    /// server that trickles would otherwise hold the create for ever.
    fn pace(&mut self, got: usize, spent: Duration) -> io::Result<()> {
        let network = self.client.network;
        self.window.0 += spent;
        self.window.1 += got as u64;
        if self.window.0 < network.speed_time {
            return Ok(());
        }
        let wanted = network.speed_limit.saturating_mul(self.window.0.as_secs().max(1));
        if self.window.1 < wanted {
            return Err(self.stalled());
        }
        self.window = (Duration::ZERO, 0);
        Ok(())
    }

    fn stalled(&mut self) -> io::Error {
        let network = self.client.network;
        let why = format!(
            "{} stalled: fewer than {} bytes a second for {} s (--speed-limit, --speed-time), at byte {} of {} of {}",
            self.url,
            network.speed_limit,
            network.speed_time.as_secs(),
            self.pos,
            self.size,
            self.name
        );
        self.fail(why)
    }

    /// The digest, checked once the declared size has been read.
    fn check(&mut self) -> io::Result<()> {
        let got = format!("sha256:{:x}", std::mem::take(&mut self.hasher).finalize());
        if got == self.digest {
            Ok(())
        } else {
            Err(self.fail(format!("{} does not match its digest (it hashes to {got})", self.name)))
        }
    }
}

impl Read for Blob {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(why) = &self.failure {
            return Err(io::Error::new(io::ErrorKind::InvalidData, why.clone()));
        }
        loop {
            let Some(body) = self.body.as_mut() else { return Ok(0) };
            // One byte more than is left, to see a blob that runs over.
            let left = self.size - self.pos;
            let want = buf.len().min(usize::try_from(left + 1).unwrap_or(usize::MAX));
            let started = Instant::now();
            let read = body.read(&mut buf[..want]);
            let spent = started.elapsed();
            match read {
                Ok(0) if left == 0 => {
                    self.body = None;
                    self.check()?;
                    return Ok(0);
                }
                Ok(n) if n as u64 > left => {
                    let why =
                        format!("{} has more than the {} bytes the manifest says", self.name, self.size);
                    return Err(self.fail(why));
                }
                Ok(n) if n > 0 => {
                    self.hasher.update(&buf[..n]);
                    self.pos += n as u64;
                    self.pace(n, spent)?;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // Nothing for a whole --speed-time (the agent's read
                // timeout): too slow, not broken, so not resumed.
                Err(e) if matches!(e.kind(), io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock) => {
                    return Err(self.stalled())
                }
                // The body ended early (Ok(0)) or the connection broke.
                result => {
                    let cause = match result {
                        Err(e) => e.to_string(),
                        _ => "the connection closed".to_owned(),
                    };
                    if self.retries >= RETRIES {
                        let why = format!(
                            "{} broke off at byte {} of {} ({cause}), and {RETRIES} retries did not get the rest",
                            self.name, self.pos, self.size
                        );
                        return Err(self.fail(why));
                    }
                    self.retries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(200 << self.retries));
                    if let Err(why) = self.request() {
                        if self.retries >= RETRIES {
                            return Err(self.fail(why));
                        }
                        self.body = Some(Box::new(io::empty()));
                    }
                }
            }
        }
    }
}
