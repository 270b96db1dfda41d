//! The caller's own entries in the host's user database, without loading
//! NSS modules into distrorun.
//!
//! Both binaries are linked statically, so that no launch pays the dynamic
//! loader; a static glibc cannot load NSS modules safely. So a lookup reads
//! the host's `/etc/passwd` and `/etc/group` itself when `/etc/nsswitch.conf`
//! names `files` first for that database, which is what glibc would answer
//! from them. Only an id or name that the files do not have is asked of
//! NSS, through `getent`, a dynamically linked program of glibc's own
//! started by its absolute path with an empty environment. Its output is
//! parsed like the files, and only entries for the ids and names asked for
//! are taken.
//!
//! A process that runs with someone else's privilege (the setuid helper)
//! must not start `getent` as the caller, who could trace it and so choose
//! its answer: [`set_runner`] installs the way such a process runs it, and
//! until one is installed a privileged process asks nothing of NSS.

use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use std::os::fd::AsFd;

use nix::fcntl::{open, OFlag};
use nix::sys::stat::{fstat, Mode, SFlag};
use nix::unistd::getresuid;

use crate::load::read_upto;
use crate::userdb::{name_and_id, GroupEntry, PasswdEntry};

/// glibc's own lookup program, run only when the files have no answer.
pub const GETENT: &str = "/usr/bin/getent";

const NSSWITCH: &str = "/etc/nsswitch.conf";
const PASSWD: &str = "/etc/passwd";
const GROUP: &str = "/etc/group";

/// The largest file or `getent` output read; more is not a user database.
const MAX_BYTES: u64 = 16 << 20;

/// Runs [`GETENT`] with these arguments; its standard output when it ran to
/// the end (exit status 0, or 2 for "some keys not found").
pub type Runner = fn(&[String]) -> Option<Vec<u8>>;

static RUNNER: OnceLock<Runner> = OnceLock::new();

/// Installs how this process runs `getent`; the first call wins.
pub fn set_runner(runner: Runner) -> bool {
    RUNNER.set(runner).is_ok()
}

/// The user with this uid, as the host's user database has it.
pub fn user_by_uid(uid: u32) -> Option<PasswdEntry> {
    if let Some(e) = HostFiles::get().passwd().and_then(|t| find_user(t, uid)) {
        return Some(e);
    }
    let out = getent(&["passwd".into(), uid.to_string()])?;
    find_user(&out, uid)
}

/// The groups with these gids that the host's user database has, in the
/// order asked; a gid it does not know is left out.
pub fn groups_by_gid(gids: &[u32]) -> Vec<GroupEntry> {
    if gids.is_empty() {
        return vec![];
    }
    let mut found: Vec<Option<GroupEntry>> = vec![None; gids.len()];
    if let Some(text) = HostFiles::get().group() {
        for (slot, gid) in found.iter_mut().zip(gids) {
            *slot = find_group(text, Key::Id(*gid));
        }
    }
    let missing: Vec<u32> = gids.iter().zip(&found).filter(|(_, f)| f.is_none()).map(|(g, _)| *g).collect();
    if !missing.is_empty() {
        let mut args = vec!["group".to_string()];
        args.extend(missing.iter().map(u32::to_string));
        if let Some(out) = getent(&args) {
            for (slot, gid) in found.iter_mut().zip(gids) {
                if slot.is_none() {
                    *slot = find_group(&out, Key::Id(*gid));
                }
            }
        }
    }
    found.into_iter().flatten().collect()
}

/// The group with this name, as the host's user database has it.
pub fn group_by_name(name: &str) -> Option<GroupEntry> {
    // A numeric key would make getent look up a gid instead.
    if name.is_empty() || name.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let key = Key::Name(name.as_bytes());
    if let Some(e) = HostFiles::get().group().and_then(|t| find_group(t, key)) {
        return Some(e);
    }
    let out = getent(&["group".into(), name.into()])?;
    find_group(&out, key)
}

/// The host files a lookup reads. A privileged process reads each only if
/// it is root's and no one else can write it, and a file that fails sends
/// its database to NSS; an unprivileged one reads them as glibc would, in
/// a user namespace too, where root's files show as unmapped.
/// Each is read at most once per process, and only when asked for.
struct HostFiles {
    files_first_passwd: bool,
    files_first_group: bool,
    passwd: OnceLock<Option<Vec<u8>>>,
    group: OnceLock<Option<Vec<u8>>>,
}

impl HostFiles {
    fn get() -> &'static HostFiles {
        static HOST: OnceLock<HostFiles> = OnceLock::new();
        HOST.get_or_init(|| {
            let conf = read_root_file(Path::new(NSSWITCH)).unwrap_or_default();
            HostFiles {
                files_first_passwd: files_first(&conf, "passwd"),
                files_first_group: files_first(&conf, "group"),
                passwd: OnceLock::new(),
                group: OnceLock::new(),
            }
        })
    }

    /// `/etc/passwd`, when glibc would answer from it first.
    fn passwd(&self) -> Option<&[u8]> {
        let read = || read_root_file(Path::new(PASSWD));
        self.files_first_passwd.then(|| self.passwd.get_or_init(read).as_deref()).flatten()
    }

    /// `/etc/group`, when glibc would answer from it first.
    fn group(&self) -> Option<&[u8]> {
        let read = || read_root_file(Path::new(GROUP));
        self.files_first_group.then(|| self.group.get_or_init(read).as_deref()).flatten()
    }
}

fn read_root_file(path: &Path) -> Option<Vec<u8>> {
    let privileged = privileged();
    let fd = open(path, OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK, Mode::empty()).ok()?;
    let st = fstat(fd.as_fd()).ok()?;
    let regular = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFREG;
    if !regular || (privileged && (st.st_uid != 0 || st.st_mode & 0o022 != 0)) {
        return None;
    }
    read_upto(File::from(fd), u64::try_from(st.st_size).unwrap_or(0), MAX_BYTES).ok()?
}

/// Whether glibc answers `db` from the files before any other source: its
/// line in nsswitch.conf names `files` first, with no action after it that
/// would go on after a success. A missing or repeated line, or `compat`,
/// leaves the answer to NSS.
pub fn files_first(nsswitch: &[u8], db: &str) -> bool {
    let mut lines = nsswitch.split(|b| *b == b'\n').filter_map(|line| {
        let line = line.split(|b| *b == b'#').next().unwrap_or_default();
        let colon = line.iter().position(|b| *b == b':')?;
        (line[..colon].trim_ascii() == db.as_bytes()).then(|| &line[colon + 1..])
    });
    let (Some(sources), None) = (lines.next(), lines.next()) else { return false };
    let mut words = sources.split(u8::is_ascii_whitespace).filter(|w| !w.is_empty());
    if words.next() != Some(b"files") {
        return false;
    }
    match words.next() {
        Some(w) if w.starts_with(b"[") => {
            let action: Vec<u8> = sources.iter().map(u8::to_ascii_uppercase).collect();
            !action.windows(7).any(|x| x == b"SUCCESS")
        }
        _ => true,
    }
}

fn entry_lines(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    text.split(|b| *b == b'\n').map(<[u8]>::trim_ascii_start).filter(|l| {
        // Comments, and compat's NIS directives, are not entries.
        !l.is_empty() && !matches!(l[0], b'#' | b'+' | b'-')
    })
}

/// What a lookup asks for: an entry by its id or by its name.
#[derive(Debug, Clone, Copy)]
pub enum Key<'a> {
    Id(u32),
    Name(&'a [u8]),
}

impl Key<'_> {
    fn matches(self, line: &[u8]) -> bool {
        let (name, id) = name_and_id(line);
        match self {
            Key::Id(wanted) => id == Some(wanted),
            Key::Name(wanted) => name == wanted,
        }
    }
}

/// The first entry for `uid`, as glibc's files module takes it. Only lines
/// with that id are parsed: every launch with `user_db: "caller"` looks the
/// caller up, and parsing each line before it costs more than the read.
pub fn find_user(text: &[u8], uid: u32) -> Option<PasswdEntry> {
    entry_lines(text).filter(|l| Key::Id(uid).matches(l)).find_map(PasswdEntry::parse)
}

/// The first group entry for `key`, parsing only the lines that match it.
pub fn find_group(text: &[u8], key: Key) -> Option<GroupEntry> {
    entry_lines(text).filter(|l| key.matches(l)).find_map(GroupEntry::parse)
}

fn getent(args: &[String]) -> Option<Vec<u8>> {
    match RUNNER.get() {
        Some(run) => run(args),
        None => getent_as_self(args),
    }
}

/// Runs `getent` as this process is, with an empty environment: the
/// unprivileged front end's way. A process whose ids differ (a setuid one)
/// must install its own runner, so here it gets no answer at all.
fn getent_as_self(args: &[String]) -> Option<Vec<u8>> {
    if privileged() {
        return None;
    }
    let out = Command::new(GETENT)
        .args(args)
        .env_clear()
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    getent_output(out.status.code(), out.stdout)
}

/// Whether this process runs with ids other than its caller's (setuid); an
/// error reading them counts as privileged.
fn privileged() -> bool {
    getresuid().map_or(true, |ids| ids.effective != ids.real || ids.saved != ids.real)
}

/// What `getent` printed, when it ran to the end: status 0, or 2 when some
/// keys were not found (it still prints the others).
pub fn getent_output(status: Option<i32>, stdout: Vec<u8>) -> Option<Vec<u8>> {
    (matches!(status, Some(0 | 2)) && stdout.len() as u64 <= MAX_BYTES).then_some(stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_first_only_when_files_answers_before_anything_else() {
        let conf = b"# comment\npasswd:   files systemd\ngroup: sss files\nshadow: files\n";
        assert!(files_first(conf, "passwd"));
        assert!(!files_first(conf, "group"));
        assert!(!files_first(b"", "passwd"), "no line: NSS decides");
        assert!(!files_first(b"passwd: compat\n", "passwd"));
        assert!(!files_first(b"passwd: files\npasswd: sss\n", "passwd"), "a repeated line");
        assert!(files_first(b"passwd: files [NOTFOUND=return] ldap\n", "passwd"));
        assert!(!files_first(b"passwd: files [SUCCESS=continue] ldap\n", "passwd"));
        assert!(files_first(b"passwd:files extrausers # trailing\n", "passwd"));
        assert!(!files_first(b"passwd: extrausers files\n", "passwd"));
        assert!(!files_first(b"passwdx: files\n", "passwd"));
    }

    #[test]
    fn the_first_entry_for_an_id_wins_and_directives_are_skipped() {
        let text = b"#a:x:5:5::/:/bin/sh\n+b:x:5:5::/:/bin/sh\n  c:x:5:5:C:/c:/bin/sh\nd:x:5:5::/:/bin/sh\n";
        assert_eq!(find_user(text, 5).map(|e| e.name), Some(b"c".to_vec()));
        assert_eq!(find_user(text, 6), None);
        let groups = b"g:x:7:a,b\nh:x:8:\nbroken:7\n";
        assert_eq!(find_group(groups, Key::Id(7)).map(|g| g.members.len()), Some(2));
        assert_eq!(find_group(groups, Key::Name(b"h")).map(|g| g.gid), Some(8));
        // A line with the id that does not parse is passed over, as before.
        let text = b"bad:x:5:5\nok:x:5:5::/:/bin/sh\n";
        assert_eq!(find_user(text, 5).map(|e| e.name), Some(b"ok".to_vec()));
        let groups = b"bad:7\nbad:x:7:a:b\ng:x:7:\n";
        assert_eq!(find_group(groups, Key::Name(b"bad")), None);
        assert_eq!(find_group(groups, Key::Id(7)).map(|g| g.name), Some(b"g".to_vec()));
    }

    #[test]
    fn getent_output_counts_only_when_it_ran_to_the_end() {
        assert!(getent_output(Some(0), b"x".to_vec()).is_some());
        assert!(getent_output(Some(2), vec![]).is_some());
        assert!(getent_output(Some(1), b"x".to_vec()).is_none());
        assert!(getent_output(None, b"x".to_vec()).is_none(), "killed by a signal");
    }
}
