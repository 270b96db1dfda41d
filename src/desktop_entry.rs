//! Desktop entry files read as `GLib`'s `GKeyFile` reads them, which is how
//! the desktops that launch them see them (the Desktop Entry Specification
//! 1.5 leaves these points to the parser):
//!
//! - lines end at `\n`, and one `\r` before it is dropped;
//! - leading whitespace is dropped, so an indented line is a line like any
//!   other (an indented `Exec=` is an `Exec=`);
//! - an empty line, or one starting with `#`, is a comment;
//! - `[NAME]` starts a group, the name running to the last `]`; a group
//!   named twice is one group;
//! - `KEY=VALUE` with the whitespace around `=` dropped; a key given twice
//!   in a group has its last value;
//! - `KEY[LOCALE]` is a key of its own, a translation of KEY;
//! - anything else, or a key before the first group, makes the file
//!   invalid.
//!
//! A file is only ever written back from what was parsed, so what distrorun
//! checks is what a desktop will read.

use std::fmt::Write as _;

/// One group: its keys in the order they first appear, each with its last
/// value (still escaped as in the file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub name: String,
    pub entries: Vec<(String, String)>,
}

impl Group {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    fn set(&mut self, key: &str, value: &str) {
        match self.entries.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => value.clone_into(&mut entry.1),
            None => self.entries.push((key.to_owned(), value.to_owned())),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DesktopFile {
    pub groups: Vec<Group>,
}

/// The key a possibly localized key translates: `Exec[de]` is `Exec`'s.
pub fn base_key(key: &str) -> &str {
    key.split('[').next().unwrap_or(key)
}

impl DesktopFile {
    pub fn parse(text: &str) -> Result<DesktopFile, String> {
        let mut file = DesktopFile::default();
        let mut current: Option<usize> = None;
        for (n, raw) in text.split('\n').enumerate() {
            let line = raw.strip_suffix('\r').unwrap_or(raw);
            let line = line.trim_start_matches(|c: char| c.is_ascii_whitespace());
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some(rest) = line.strip_prefix('[') {
                let Some(end) = rest.rfind(']') else {
                    return Err(format!("line {} opens a group without closing it", n + 1));
                };
                let name = &rest[..end];
                if name.is_empty() || name.contains(['[', ']']) || name.chars().any(char::is_control) {
                    return Err(format!("line {} names an invalid group", n + 1));
                }
                current = Some(file.groups.iter().position(|g| g.name == name).unwrap_or_else(|| {
                    file.groups.push(Group { name: name.to_owned(), entries: Vec::new() });
                    file.groups.len() - 1
                }));
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                return Err(format!("line {} is neither a group, a key nor a comment", n + 1));
            };
            let key = key.trim_end_matches(|c: char| c.is_ascii_whitespace());
            let value = value.trim_start_matches(|c: char| c.is_ascii_whitespace());
            if key.is_empty() {
                return Err(format!("line {} has no key before its '='", n + 1));
            }
            let Some(group) = current else {
                return Err(format!("line {} has a key before the first group", n + 1));
            };
            file.groups[group].set(key, value);
        }
        Ok(file)
    }

    pub fn group(&self, name: &str) -> Option<&Group> {
        self.groups.iter().find(|g| g.name == name)
    }

    /// `key` of the `[Desktop Entry]` group.
    pub fn main_value(&self, key: &str) -> Option<&str> {
        self.group("Desktop Entry").and_then(|g| g.get(key))
    }

    /// The file as text, after `header` comment lines.
    pub fn to_text(&self, header: &str) -> String {
        let mut out = String::from(header);
        for (i, group) in self.groups.iter().enumerate() {
            if i > 0 {
                out.push('\n');
            }
            let _ = writeln!(out, "[{}]", group.name);
            for (key, value) in &group.entries {
                let _ = writeln!(out, "{key}={value}");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::DesktopFile;

    #[test]
    fn indentation_duplicates_and_groups_are_read_as_glib_reads_them() {
        let text = "# c\n[Desktop Entry]\nExec=safe\n\tExec = evil %U\r\n  Name=A\n[Other]\nExec=x\n[Desktop Entry]\nExec[de]=de\n";
        let f = DesktopFile::parse(text).unwrap();
        assert_eq!(f.groups.len(), 2);
        assert_eq!(f.main_value("Exec"), Some("evil %U"));
        assert_eq!(f.main_value("Exec[de]"), Some("de"));
        assert_eq!(f.main_value("Name"), Some("A"));
        assert_eq!(DesktopFile::parse(&f.to_text("# h\n")).unwrap(), f);
    }

    #[test]
    fn what_glib_refuses_is_refused() {
        assert!(DesktopFile::parse("Exec=x\n[Desktop Entry]\n").is_err());
        assert!(DesktopFile::parse("[Desktop Entry]\njunk\n").is_err());
        assert!(DesktopFile::parse("[Desktop Entry\nExec=x\n").is_err());
        assert!(DesktopFile::parse("[Desktop Entry]\n=x\n").is_err());
    }
}
