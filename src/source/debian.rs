//! `--debian SUITE`: a Debian or derivative suite built by mmdebstrap in
//! its unshare mode, which writes the tree as a tar stream on its standard
//! output. distrorun's own unpacker writes that stream, so there is one way
//! trees get written whatever their source.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};

use distrorun_engine::Error;

use crate::{error, machine};

#[derive(Debug, Clone)]
pub struct Debian {
    pub suite: String,
    pub mirror: Option<String>,
    pub include: Option<String>,
}

/// mmdebstrap, running, with its messages kept for the error should it fail.
pub struct Running {
    pub child: Child,
    log: Option<File>,
    pub what: String,
}

impl Debian {
    /// Checks the arguments, then starts mmdebstrap. On a terminal, and
    /// unless `quiet`, its messages pass straight through; otherwise they
    /// are kept, and shown only if it fails.
    pub fn start(&self, quiet: bool, system: bool) -> Result<Running, Error> {
        let what = format!("the {} suite built by mmdebstrap", self.suite);
        if !word(&self.suite, |b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) {
            return Err(Error::msg(format!(
                "invalid suite {:?}: a suite is a word like trixie or stable",
                self.suite
            )));
        }
        if let Some(include) = &self.include {
            if !word(include, |b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.,:".contains(&b)) {
                return Err(Error::msg(format!(
                    "invalid --include {include:?}: give package names separated by commas"
                )));
            }
        }
        let mirror = match &self.mirror {
            Some(m) if m.starts_with('-') || !m.contains(':') || m.contains(char::is_whitespace) => {
                return Err(Error::msg(format!(
                    "invalid mirror {m:?}: give a URL such as http://deb.example.org/debian"
                )))
            }
            Some(m) => Some(m.clone()),
            None => host_mirror(),
        };
        // Not from `$PATH`, like newuidmap.
        let program = machine::program("mmdebstrap").ok_or_else(|| {
            Error::msg("mmdebstrap is not installed; --create --debian needs it")
                .with_hint("install it: apt-get install mmdebstrap")
        })?;
        let mut cmd = Command::new(&program);
        // Root builds with the real ids; a user through the subordinate ones.
        cmd.arg(if system { "--mode=root" } else { "--mode=unshare" });
        cmd.args(["--variant=minbase", "--format=tar"]);
        if let Some(include) = &self.include {
            cmd.arg(format!("--include={include}"));
        }
        let shown = !quiet && std::io::IsTerminal::is_terminal(&std::io::stderr());
        let log = if shown {
            None
        } else {
            cmd.arg("--quiet");
            Some(log_file()?)
        };
        cmd.arg(&self.suite).arg("-");
        cmd.args(mirror);
        cmd.stdin(Stdio::null()).stdout(Stdio::piped());
        if let Some(log) = &log {
            let copy =
                log.try_clone().map_err(|e| Error::msg(format!("cannot keep mmdebstrap's messages: {e}")))?;
            cmd.stderr(Stdio::from(copy));
        }
        let child = cmd.spawn().map_err(|e| error::io(format!("run {}", program.display()), &e))?;
        crate::tree::interrupt::set_child(Some(child.id()));
        Ok(Running { child, log, what })
    }
}

impl Running {
    /// Waits for mmdebstrap; a failure is an error with its last messages.
    pub fn finish(self) -> Result<(), Error> {
        self.finish_unless(|_| false)
    }

    /// Waits for mmdebstrap after distrorun stopped reading its output: a
    /// mmdebstrap still writing then dies of SIGPIPE, which is no failure
    /// of its own.
    pub fn finish_after_close(self) -> Result<(), Error> {
        self.finish_unless(|status| status.signal() == Some(nix::libc::SIGPIPE))
    }

    fn finish_unless(mut self, excused: impl Fn(&ExitStatus) -> bool) -> Result<(), Error> {
        let status = self.child.wait().map_err(|e| error::io("wait for mmdebstrap", &e));
        crate::tree::interrupt::set_child(None);
        let status = status?;
        if status.success() || excused(&status) {
            return Ok(());
        }
        let tail = self.log.as_mut().map(last_lines).unwrap_or_default();
        let err = Error::msg(format!("mmdebstrap failed ({status}), so {} could not be made", self.what));
        Err(if tail.is_empty() { err } else { err.with_hint(format!("mmdebstrap said:\n{tail}")) })
    }

    /// Stops mmdebstrap after a failure on distrorun's side.
    pub fn abandon(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn word(s: &str, allowed: impl Fn(u8) -> bool) -> bool {
    !s.is_empty() && !s.starts_with('-') && s.bytes().all(allowed)
}

/// An unlinked file for mmdebstrap's messages: nothing is left behind.
fn log_file() -> Result<File, Error> {
    let fd = nix::sys::memfd::memfd_create(c"mmdebstrap-log", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
        .map_err(|e| Error::sys("keep mmdebstrap's messages", e))?;
    Ok(File::from(fd))
}

fn last_lines(log: &mut File) -> String {
    let mut text = String::new();
    if log.seek(SeekFrom::Start(0)).is_ok() {
        let _ = log.take(1 << 20).read_to_string(&mut text);
    }
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(10)..].join("\n")
}

/// The Debian mirror the host's apt uses: the first `URIs:` of a deb822
/// source, or the first `deb` line of sources.list, leaving out the
/// security archive, which holds no full suite.
pub fn host_mirror() -> Option<String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir("/etc/apt/sources.list.d")
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "sources" || x == "list"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files.insert(0, PathBuf::from("/etc/apt/sources.list"));
    files.iter().find_map(|f| std::fs::read_to_string(f).ok().and_then(|text| mirror_in(&text)))
}

fn mirror_in(text: &str) -> Option<String> {
    let uris = text.lines().filter_map(|line| {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("URIs:") {
            return rest.split_whitespace().next();
        }
        // `deb [options] URI suite ...`; options in brackets are skipped.
        let mut words = line.split_whitespace();
        if words.next() != Some("deb") {
            return None;
        }
        let mut next = words.next()?;
        if next.starts_with('[') {
            while !next.ends_with(']') {
                next = words.next()?;
            }
            next = words.next()?;
        }
        Some(next)
    });
    uris.filter(|u| !u.contains("security")).map(str::to_owned).next()
}

#[cfg(test)]
mod tests {
    use super::{mirror_in, Child, Command, Running};

    /// A stand-in for mmdebstrap that ends as `script` makes it.
    fn running(script: &str) -> Running {
        let child: Child = Command::new("/bin/sh").args(["-c", script]).spawn().expect("/bin/sh runs");
        Running { child, log: None, what: "the test suite".into() }
    }

    #[test]
    fn sigpipe_is_told_by_the_exit_status() {
        // Killed by SIGPIPE: no failure of its own once its output is closed.
        assert!(running("kill -PIPE $$").finish_after_close().is_ok());
        assert!(running("kill -PIPE $$").finish().is_err());
        // Any other death, or exiting 141 (what a shell reports for SIGPIPE),
        // is its own failure.
        assert!(running("kill -TERM $$").finish_after_close().is_err());
        assert!(running("exit 141").finish_after_close().is_err());
        assert!(running("exit 0").finish_after_close().is_ok());
    }

    #[test]
    fn the_hosts_mirror_is_found_in_both_formats() {
        let deb822 = "Types: deb\nURIs: http://deb.example.org/debian\nSuites: bookworm\n\nTypes: deb\nURIs: http://deb.example.org/debian-security\n";
        assert_eq!(mirror_in(deb822).as_deref(), Some("http://deb.example.org/debian"));
        let list = "# deb http://old/\ndeb http://security.example.org/ bookworm-security main\ndeb [arch=amd64 signed-by=/k.gpg] http://m.example.org/debian bookworm main\n";
        assert_eq!(mirror_in(list).as_deref(), Some("http://m.example.org/debian"));
        assert_eq!(mirror_in("deb-src http://x/ y main\n"), None);
    }
}
