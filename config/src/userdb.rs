//! The caller's identity inside a distro: which `/etc/passwd` and
//! `/etc/group` the command sees (the config key `user_db`), and the pure
//! work of merging the distro's files with entries from the host.
//!
//! Nothing here reads a file or asks NSS: the engine gathers the bytes and
//! the entries, this module decides what the merged files hold. Every line
//! it adds is rendered from fields that were checked one by one, so a name
//! or GECOS field holding `:`, `,` or a newline can never forge a second
//! entry or a group membership.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer};

/// Where the identity files inside the distro come from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum UserDb {
    /// The tree's own files, untouched.
    Distro,
    /// The tree's files, plus the caller's own entry and groups from the
    /// host where the tree lacks them.
    #[default]
    Caller,
    /// The tree's system entries, plus the host's regular users and groups.
    Host,
}

impl UserDb {
    pub fn as_str(self) -> &'static str {
        match self {
            UserDb::Distro => "distro",
            UserDb::Caller => "caller",
            UserDb::Host => "host",
        }
    }
}

impl<'de> Deserialize<'de> for UserDb {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // A string, `user_db: "host"`, like the other keys' values.
        match String::deserialize(d)?.as_str() {
            "distro" => Ok(UserDb::Distro),
            "caller" => Ok(UserDb::Caller),
            "host" => Ok(UserDb::Host),
            other => Err(de::Error::invalid_value(
                de::Unexpected::Str(other),
                &"\"caller\", \"distro\" or \"host\"",
            )),
        }
    }
}

/// One `/etc/passwd` entry, field by field, as bytes: NSS names need not be
/// UTF-8.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry {
    pub name: Vec<u8>,
    pub passwd: Vec<u8>,
    pub uid: u32,
    pub gid: u32,
    pub gecos: Vec<u8>,
    pub dir: Vec<u8>,
    pub shell: Vec<u8>,
}

/// One `/etc/group` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEntry {
    pub name: Vec<u8>,
    pub passwd: Vec<u8>,
    pub gid: u32,
    pub members: Vec<Vec<u8>>,
}

/// An entry that cannot be written to the file format without changing
/// what it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// "user" or "group".
    pub kind: &'static str,
    /// The entry's id, which is always safe to show.
    pub id: u32,
    pub why: String,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the host's {} entry for id {} {}", self.kind, self.id, self.why)
    }
}

impl std::error::Error for Invalid {}

/// A field of any kind: a `:` would start the next field, a newline the
/// next entry, and a NUL ends the C string glibc reads.
fn field_problem(field: &[u8], what: &str) -> Result<(), String> {
    match field.iter().find(|b| matches!(b, b':' | b'\n' | b'\r' | 0)) {
        Some(b) => {
            Err(format!("has a {what} holding the byte {:?}, which the file format cannot hold", *b as char))
        }
        None => Ok(()),
    }
}

/// A user or group name: also no `,` (it separates group members), no
/// white space, and no leading `+` or `-`, which glibc's `compat` module
/// reads as NIS directives.
fn name_problem(name: &[u8]) -> Result<(), String> {
    field_problem(name, "name")?;
    if name.is_empty() {
        return Err("has an empty name".into());
    }
    if name.iter().any(|b| *b == b',' || b.is_ascii_whitespace()) || matches!(name[0], b'+' | b'-') {
        return Err(format!(
            "has a name, {:?}, that cannot appear in the file",
            String::from_utf8_lossy(name)
        ));
    }
    Ok(())
}

impl PasswdEntry {
    /// The entry as one line of `/etc/passwd`, newline included, or why it
    /// cannot be written.
    pub fn line(&self) -> Result<Vec<u8>, Invalid> {
        let bad = |why| Invalid { kind: "user", id: self.uid, why };
        name_problem(&self.name).map_err(bad)?;
        for (f, what) in [
            (&self.passwd, "password field"),
            (&self.gecos, "GECOS field"),
            (&self.dir, "home directory"),
            (&self.shell, "shell"),
        ] {
            field_problem(f, what).map_err(bad)?;
        }
        let mut out = Vec::with_capacity(64);
        for (i, f) in [
            &self.name[..],
            &self.passwd,
            self.uid.to_string().as_bytes(),
            self.gid.to_string().as_bytes(),
            &self.gecos,
            &self.dir,
            &self.shell,
        ]
        .iter()
        .enumerate()
        {
            if i > 0 {
                out.push(b':');
            }
            out.extend_from_slice(f);
        }
        out.push(b'\n');
        Ok(out)
    }

    /// Parses one line of a passwd file; None unless it has exactly the
    /// seven fields with numeric ids.
    pub fn parse(line: &[u8]) -> Option<PasswdEntry> {
        let f: Vec<&[u8]> = line.split(|b| *b == b':').collect();
        let [name, passwd, uid, gid, gecos, dir, shell] = f[..] else { return None };
        Some(PasswdEntry {
            name: name.to_vec(),
            passwd: passwd.to_vec(),
            uid: number(uid)?,
            gid: number(gid)?,
            gecos: gecos.to_vec(),
            dir: dir.to_vec(),
            shell: shell.to_vec(),
        })
    }
}

impl GroupEntry {
    /// The entry as one line of `/etc/group`, newline included.
    pub fn line(&self) -> Result<Vec<u8>, Invalid> {
        let bad = |why| Invalid { kind: "group", id: self.gid, why };
        name_problem(&self.name).map_err(bad)?;
        field_problem(&self.passwd, "password field").map_err(bad)?;
        for m in &self.members {
            name_problem(m)
                .map_err(|why| bad(format!("lists a member that {}", why.trim_start_matches("has "))))?;
        }
        let mut out = Vec::with_capacity(32);
        out.extend_from_slice(&self.name);
        out.push(b':');
        out.extend_from_slice(&self.passwd);
        out.push(b':');
        out.extend_from_slice(self.gid.to_string().as_bytes());
        out.push(b':');
        out.extend_from_slice(&self.members.join(&b","[..]));
        out.push(b'\n');
        Ok(out)
    }

    /// Parses one line of a group file; None unless it has exactly the four
    /// fields with a numeric id.
    pub fn parse(line: &[u8]) -> Option<GroupEntry> {
        let f: Vec<&[u8]> = line.split(|b| *b == b':').collect();
        let [name, passwd, gid, members] = f[..] else { return None };
        Some(GroupEntry {
            name: name.to_vec(),
            passwd: passwd.to_vec(),
            gid: number(gid)?,
            members: members.split(|b| *b == b',').filter(|m| !m.is_empty()).map(<[u8]>::to_vec).collect(),
        })
    }
}

fn number(field: &[u8]) -> Option<u32> {
    if field.is_empty() || !field.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(field).ok()?.parse().ok()
}

fn lines(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    text.split(|b| *b == b'\n').filter(|l| !l.is_empty())
}

/// The name and id (third field, in both file formats) of each entry line.
fn names_and_ids(text: &[u8]) -> impl Iterator<Item = (&[u8], Option<u32>)> {
    lines(text).filter(|l| !l.starts_with(b"#")).map(name_and_id)
}

/// The name and id of one passwd or group line, without parsing the rest:
/// what a lookup compares before it parses the one line it wants.
pub fn name_and_id(line: &[u8]) -> (&[u8], Option<u32>) {
    let mut f = line.split(|b| *b == b':');
    let name = f.next().unwrap_or_default();
    (name, f.nth(1).and_then(number))
}

/// Whether a passwd or group file has an entry with this id: the quick scan
/// that spares the NSS lookups when the distro already knows the caller.
pub fn has_id(text: &[u8], id: u32) -> bool {
    names_and_ids(text).any(|(_, i)| i == Some(id))
}

/// The name the file gives this id, if any.
pub fn name_of(text: &[u8], id: u32) -> Option<&[u8]> {
    names_and_ids(text).find(|(_, i)| *i == Some(id)).map(|(n, _)| n)
}

fn has_name_or_id(text: &[u8], name: &[u8], id: u32) -> bool {
    names_and_ids(text).any(|(n, i)| n == name || i == Some(id))
}

/// The merged files, and the lines that were added to the distro's, for
/// `-v` and `--dry-run`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Merged {
    pub passwd: Vec<u8>,
    pub group: Vec<u8>,
    pub added_users: Vec<Vec<u8>>,
    pub added_groups: Vec<Vec<u8>>,
    /// Entries left out because the file format cannot hold them.
    pub skipped: Vec<Invalid>,
}

impl Merged {
    fn from_distro(passwd: &[u8], group: &[u8]) -> Merged {
        let with_newline = |t: &[u8]| {
            let mut v = t.to_vec();
            if !v.is_empty() && !v.ends_with(b"\n") {
                v.push(b'\n');
            }
            v
        };
        Merged { passwd: with_newline(passwd), group: with_newline(group), ..Merged::default() }
    }

    /// True when nothing was added or taken away.
    pub fn is_unchanged(&self) -> bool {
        self.added_users.is_empty() && self.added_groups.is_empty()
    }

    /// Adds the entry, or records why it was left out: a user whose entry
    /// cannot be written stays without a name, as with `"distro"`, which is
    /// better than refusing every run of a user whose directory service
    /// allows odd names.
    fn add_user(&mut self, e: &PasswdEntry) {
        match e.line() {
            Ok(line) => {
                self.passwd.extend_from_slice(&line);
                self.added_users.push(line);
            }
            Err(why) => self.skipped.push(why),
        }
    }

    fn add_group(&mut self, e: &GroupEntry) {
        match e.line() {
            Ok(line) => {
                self.group.extend_from_slice(&line);
                self.added_groups.push(line);
            }
            Err(why) => self.skipped.push(why),
        }
    }
}

/// `user_db: "caller"`: the distro's files, plus the caller's entry and the
/// caller's groups wherever the distro has no entry of the same name or id.
/// A distro entry always wins and is never duplicated.
pub fn merge_caller(
    distro_passwd: &[u8],
    distro_group: &[u8],
    me: &PasswdEntry,
    my_groups: &[GroupEntry],
) -> Merged {
    let mut merged = Merged::from_distro(distro_passwd, distro_group);
    add_caller(&mut merged, me, my_groups);
    merged
}

fn add_caller(merged: &mut Merged, me: &PasswdEntry, my_groups: &[GroupEntry]) {
    if !has_name_or_id(&merged.passwd, &me.name, me.uid) {
        merged.add_user(me);
    }
    // Group lists name the caller as the passwd file inside does.
    let member = name_of(&merged.passwd, me.uid).unwrap_or(&me.name).to_vec();
    let mut seen = Vec::with_capacity(my_groups.len());
    for g in my_groups {
        if seen.contains(&g.gid) || has_name_or_id(&merged.group, &g.name, g.gid) {
            continue;
        }
        seen.push(g.gid);
        let members = if g.gid == me.gid { vec![] } else { vec![member.clone()] };
        merged.add_group(&GroupEntry { name: g.name.clone(), passwd: b"x".to_vec(), gid: g.gid, members });
    }
}

/// The host's range of regular ids, from `/etc/login.defs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub uid_min: u32,
    pub uid_max: u32,
    pub gid_min: u32,
    pub gid_max: u32,
}

impl Default for Limits {
    /// shadow's defaults, where login.defs does not say.
    fn default() -> Limits {
        Limits { uid_min: 1000, uid_max: 60000, gid_min: 1000, gid_max: 60000 }
    }
}

impl Limits {
    /// Reads `UID_MIN`, `UID_MAX`, `GID_MIN` and `GID_MAX` from the text of
    /// a login.defs file; anything missing or malformed keeps its default.
    pub fn from_login_defs(text: &[u8]) -> Limits {
        let mut l = Limits::default();
        for line in lines(text) {
            let mut words = line.split(u8::is_ascii_whitespace).filter(|w| !w.is_empty());
            let (Some(key), Some(value)) = (words.next(), words.next()) else { continue };
            let Some(value) = number(value) else { continue };
            match key {
                b"UID_MIN" => l.uid_min = value,
                b"UID_MAX" => l.uid_max = value,
                b"GID_MIN" => l.gid_min = value,
                b"GID_MAX" => l.gid_max = value,
                _ => {}
            }
        }
        l
    }
}

/// `user_db: "host"`: the distro's system entries (ids outside the host's
/// regular range, so `root` and `nobody` stay the distro's), plus the
/// host's regular users and groups, plus the caller as for `"caller"`.
/// Host lines are parsed and written anew, never copied, and a host line
/// that does not parse is left out.
pub fn merge_host(
    distro_passwd: &[u8],
    distro_group: &[u8],
    host_passwd: &[u8],
    host_group: &[u8],
    limits: Limits,
    me: &PasswdEntry,
    my_groups: &[GroupEntry],
) -> Merged {
    let is_regular_user = |id: u32| (limits.uid_min..=limits.uid_max).contains(&id);
    let is_regular_group = |id: u32| (limits.gid_min..=limits.gid_max).contains(&id);
    let keep = |text: &[u8], regular: &dyn Fn(u32) -> bool| {
        let mut out = Vec::with_capacity(text.len());
        for line in lines(text) {
            let id = line.split(|b| *b == b':').nth(2).and_then(number);
            // Lines that are not entries (comments, `+` directives) stay as
            // the distro wrote them.
            if id.is_none_or(|id| !regular(id)) {
                out.extend_from_slice(line);
                out.push(b'\n');
            }
        }
        out
    };
    let mut merged = Merged {
        passwd: keep(distro_passwd, &is_regular_user),
        group: keep(distro_group, &is_regular_group),
        ..Merged::default()
    };
    for e in lines(host_passwd).filter_map(PasswdEntry::parse) {
        if is_regular_user(e.uid) && !has_name_or_id(&merged.passwd, &e.name, e.uid) {
            merged.add_user(&e);
        }
    }
    for e in lines(host_group).filter_map(GroupEntry::parse) {
        if is_regular_group(e.gid) && !has_name_or_id(&merged.group, &e.name, e.gid) {
            merged.add_group(&GroupEntry { passwd: b"x".to_vec(), ..e });
        }
    }
    add_caller(&mut merged, me, my_groups);
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> PasswdEntry {
        PasswdEntry {
            name: b"alice".to_vec(),
            passwd: b"x".to_vec(),
            uid: 1003,
            gid: 1003,
            gecos: b"Alice Liddell,,,".to_vec(),
            dir: b"/home/alice".to_vec(),
            shell: b"/bin/bash".to_vec(),
        }
    }

    fn group(name: &str, gid: u32) -> GroupEntry {
        GroupEntry { name: name.into(), passwd: b"x".to_vec(), gid, members: vec![] }
    }

    const DISTRO_PASSWD: &[u8] =
        b"root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";
    const DISTRO_GROUP: &[u8] = b"root:x:0:\naudio:x:29:\nnogroup:x:65534:\n";

    #[test]
    fn the_caller_and_missing_groups_are_added() {
        let groups = [group("alice", 1003), group("audio", 29), group("devs", 2000), group("devs", 2000)];
        let m = merge_caller(DISTRO_PASSWD, DISTRO_GROUP, &me(), &groups);
        assert_eq!(m.added_users, [b"alice:x:1003:1003:Alice Liddell,,,:/home/alice:/bin/bash\n".to_vec()]);
        assert_eq!(m.added_groups, [b"alice:x:1003:\n".to_vec(), b"devs:x:2000:alice\n".to_vec()]);
        assert!(m.passwd.starts_with(DISTRO_PASSWD));
        assert!(m.passwd.ends_with(b"/bin/bash\n"));
        assert!(m.group.starts_with(DISTRO_GROUP));
        assert_eq!(String::from_utf8_lossy(&m.group).lines().count(), 5);
    }

    #[test]
    fn a_distro_entry_with_the_same_name_or_id_wins() {
        let passwd = [DISTRO_PASSWD, b"al:x:1003:100::/home/al:/bin/sh\n"].concat();
        let m = merge_caller(&passwd, DISTRO_GROUP, &me(), &[group("users", 29), group("devs", 2000)]);
        assert!(m.added_users.is_empty());
        // The member is named as the distro names the caller's uid.
        assert_eq!(m.added_groups, [b"devs:x:2000:al\n".to_vec()]);
        let passwd = [DISTRO_PASSWD, b"alice:x:5000:5000::/home/alice:/bin/sh"].concat();
        let m = merge_caller(&passwd, DISTRO_GROUP, &me(), &[]);
        assert!(m.is_unchanged());
        assert!(m.passwd.ends_with(b"/bin/sh\n"), "a missing last newline is added");
    }

    #[test]
    fn fields_that_would_forge_entries_are_left_out() {
        let unchanged = |m: &Merged| {
            assert!(m.is_unchanged(), "{m:?}");
            assert_eq!(m.passwd, DISTRO_PASSWD);
            assert_eq!(m.group, DISTRO_GROUP);
        };
        for gecos in [&b"Eve:x:0:0:root"[..], b"Eve\nroot::0:0::/:/bin/sh", b"nul\0byte", b"cr\r"] {
            let e = PasswdEntry { gecos: gecos.to_vec(), ..me() };
            let m = merge_caller(DISTRO_PASSWD, DISTRO_GROUP, &e, &[]);
            unchanged(&m);
            assert_eq!((m.skipped[0].kind, m.skipped[0].id), ("user", 1003));
            assert!(m.skipped[0].to_string().contains("GECOS field holding"), "{}", m.skipped[0]);
        }
        for name in [&b""[..], b"a:b", b"a,b", b"a b", b"+nis", b"-nis", b"a\nb"] {
            let e = PasswdEntry { name: name.to_vec(), ..me() };
            let m = merge_caller(DISTRO_PASSWD, DISTRO_GROUP, &e, &[]);
            unchanged(&m);
            assert_eq!(m.skipped.len(), 1, "{name:?}");
            let g = GroupEntry { name: name.to_vec(), ..group("ok", 2000) };
            let m = merge_caller(DISTRO_PASSWD, DISTRO_GROUP, &me(), &[g]);
            assert_eq!((m.added_groups.len(), m.skipped.len()), (0, 1), "{name:?}");
        }
        for field in ["dir", "shell"] {
            let mut e = me();
            *(if field == "dir" { &mut e.dir } else { &mut e.shell }) = b"/x:/y".to_vec();
            unchanged(&merge_caller(DISTRO_PASSWD, DISTRO_GROUP, &e, &[]));
        }
        // Odd but harmless characters pass through unchanged.
        let e = PasswdEntry { gecos: "Zoë O'Brien,#1,\\x;=%".as_bytes().to_vec(), ..me() };
        let m = merge_caller(DISTRO_PASSWD, DISTRO_GROUP, &e, &[]);
        assert_eq!(PasswdEntry::parse(m.added_users[0].trim_ascii_end()), Some(e));
    }

    /// Whatever bytes NSS hands over, the merged files hold exactly the
    /// entries that were added, each reading back as it was given.
    #[test]
    fn no_field_content_can_add_or_change_another_entry() {
        let mut seed: u64 = 0x5eed;
        let mut next = || {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            seed >> 33
        };
        let alphabet = b"ab:,\n\r\0 +-#\\x\xc3\xa9";
        for _ in 0..20_000 {
            let mut field = || {
                let len = usize::try_from(next() % 6).unwrap();
                (0..len)
                    .map(|_| alphabet[usize::try_from(next()).unwrap() % alphabet.len()])
                    .collect::<Vec<u8>>()
            };
            let e = PasswdEntry {
                name: field(),
                passwd: b"x".to_vec(),
                uid: 1003,
                gid: 1003,
                gecos: field(),
                dir: field(),
                shell: field(),
            };
            let g = GroupEntry { name: field(), passwd: b"x".to_vec(), gid: 2000, members: vec![] };
            let m = merge_caller(DISTRO_PASSWD, DISTRO_GROUP, &e, std::slice::from_ref(&g));
            let users: Vec<PasswdEntry> =
                lines(&m.passwd).map(|l| PasswdEntry::parse(l).expect("every line parses")).collect();
            assert_eq!(users.len(), 2 + m.added_users.len());
            if !m.added_users.is_empty() {
                assert_eq!(users[2], e);
            }
            let groups: Vec<GroupEntry> =
                lines(&m.group).map(|l| GroupEntry::parse(l).expect("every line parses")).collect();
            assert_eq!(groups.len(), 3 + m.added_groups.len());
            if let Some(added) = groups.get(3) {
                assert_eq!((added.name.as_slice(), added.gid), (g.name.as_slice(), 2000));
                assert!(added.members.len() <= 1);
            }
            assert_eq!(m.added_users.len() + m.added_groups.len() + m.skipped.len(), 2);
        }
    }

    #[test]
    fn the_quick_scan_finds_ids_in_either_file() {
        assert!(has_id(DISTRO_PASSWD, 65534));
        assert!(has_id(DISTRO_GROUP, 29));
        assert!(!has_id(DISTRO_PASSWD, 1003));
        assert!(!has_id(b"# 1003\nx:x:10030:1\n", 1003));
        assert_eq!(name_of(DISTRO_GROUP, 29), Some(&b"audio"[..]));
    }

    #[test]
    fn lines_round_trip() {
        let line = b"alice:x:1003:1003:Alice Liddell,,,:/home/alice:/bin/bash";
        assert_eq!(PasswdEntry::parse(line).unwrap().line().unwrap(), [&line[..], b"\n"].concat());
        assert_eq!(PasswdEntry::parse(b"a:x:1:2:g:/h"), None);
        assert_eq!(PasswdEntry::parse(b"a:x:-1:2:g:/h:/s"), None);
        let g = GroupEntry::parse(b"devs:x:2000:alice,bob").unwrap();
        assert_eq!(g.members, [b"alice".to_vec(), b"bob".to_vec()]);
        assert_eq!(g.line().unwrap(), b"devs:x:2000:alice,bob\n");
        assert_eq!(GroupEntry::parse(b"devs:x:2000").map(|g| g.gid), None);
    }

    #[test]
    fn login_defs_limits() {
        let l = Limits::from_login_defs(
            b"# comment\nUID_MIN\t 500\nGID_MIN 600\nUID_MAX x\nMAIL_DIR /var/mail\n",
        );
        assert_eq!(l, Limits { uid_min: 500, uid_max: 60000, gid_min: 600, gid_max: 60000 });
        assert_eq!(Limits::from_login_defs(b""), Limits::default());
    }

    #[test]
    fn host_mode_keeps_the_distros_system_entries_and_adds_the_hosts_regular_ones() {
        let distro = [DISTRO_PASSWD, b"olduser:x:1000:1000::/home/olduser:/bin/sh\n+::::::\n"].concat();
        let host_passwd = b"root:x:0:0:host root:/root:/bin/zsh\nbob:x:1000:1000:Bob:/home/bob:/bin/bash\n\
            alice:x:1003:1003:Alice:/home/alice:/bin/bash\nbroken:x:1005\nnobody:x:65534:65534::/:/bin/false\n";
        let host_group = b"root:x:0:\nbob:secret:1000:\ndevs:x:2000:bob,alice\n";
        let m = merge_host(
            &distro,
            DISTRO_GROUP,
            host_passwd,
            host_group,
            Limits::default(),
            &me(),
            &[group("alice", 1003)],
        );
        let text = String::from_utf8(m.passwd.clone()).unwrap();
        assert!(text.starts_with("root:x:0:0:root:/root:/bin/bash\n"), "{text}");
        assert!(text.contains("nobody:x:65534:65534:nobody:"), "{text}");
        assert!(text.contains("+::::::\n"), "{text}");
        assert!(!text.contains("olduser"), "{text}");
        assert!(text.contains("bob:x:1000:1000:Bob:/home/bob:/bin/bash\n"), "{text}");
        assert!(text.contains("alice:x:1003:1003:Alice:"), "the host's own entry for the caller: {text}");
        assert!(!text.contains("broken") && !text.contains("host root"), "{text}");
        assert_eq!(m.added_users.len(), 2);
        let groups = String::from_utf8(m.group).unwrap();
        assert!(groups.contains("bob:x:1000:\n"), "host group passwords are not copied: {groups}");
        assert!(groups.contains("devs:x:2000:bob,alice\n"), "{groups}");
        assert!(groups.contains("alice:x:1003:\n"), "{groups}");
    }
}
