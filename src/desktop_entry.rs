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
//!
//! Values follow the Desktop Entry Specification 1.5: a value is first
//! unescaped as a string (`\s`, `\n`, `\t`, `\r`, `\\`), then split into
//! arguments, where double quotes group and a backslash escapes `"`,
//! `` ` ``, `$` and `\` inside them. Field codes (`%f`, `%U`, ...) stand
//! alone and are kept for the host's launcher to expand.

use std::fmt::Write as _;
use std::path::Path;

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

/// One argument of an `Exec` line: a field code, kept for the launcher to
/// expand, or a literal word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arg {
    Field(char),
    Word(String),
}

/// The string-level escapes of a desktop entry value.
pub fn unescape_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('s') => out.push(' '),
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some(other) if other != '\\' => {
                out.push('\\');
                out.push(other);
            }
            // `\\`, or a lone backslash at the end.
            Some(_) | None => out.push('\\'),
        }
    }
    out
}

pub fn escape_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out
}

/// Splits an `Exec` value into its arguments, per the specification.
pub fn split_exec(value: &str) -> Result<Vec<Arg>, String> {
    let value = unescape_string(value);
    let mut args = Vec::new();
    let mut chars = value.chars().peekable();
    loop {
        while chars.next_if(|c| *c == ' ' || *c == '\t').is_some() {}
        let Some(&first) = chars.peek() else { break };
        if first == '"' {
            chars.next();
            let mut word = String::new();
            loop {
                match chars.next() {
                    Some('"') => break,
                    Some('\\') => match chars.next() {
                        Some(c @ ('"' | '`' | '$' | '\\')) => word.push(c),
                        Some(c) => {
                            return Err(format!(
                                "its Exec line escapes {c:?} inside quotes, which is not allowed"
                            ))
                        }
                        None => return Err("its Exec line ends inside quotes".into()),
                    },
                    Some(c) => word.push(c),
                    None => return Err("its Exec line has an unclosed quote".into()),
                }
            }
            args.push(Arg::Word(word.replace("%%", "%")));
            continue;
        }
        let mut word = String::new();
        while let Some(c) = chars.next_if(|c| *c != ' ' && *c != '\t') {
            word.push(c);
        }
        let mut code = word.chars();
        match (code.next(), code.next(), code.next()) {
            (Some('%'), Some(f), None) if "fFuUick".contains(f) => args.push(Arg::Field(f)),
            // Deprecated codes expand to nothing.
            (Some('%'), Some(f), None) if "dDnNvm".contains(f) => {}
            _ => args.push(Arg::Word(word.replace("%%", "%"))),
        }
    }
    if args.is_empty() {
        return Err("its Exec line is empty".into());
    }
    Ok(args)
}

/// Characters that make the specification require quoting an argument.
const RESERVED: &[char] =
    &[' ', '\t', '\n', '"', '\'', '\\', '>', '<', '~', '|', '&', ';', '$', '*', '?', '#', '(', ')', '`'];

fn quote_arg(word: &str) -> String {
    let word = word.replace('%', "%%");
    if !word.is_empty() && !word.contains(RESERVED) {
        return word;
    }
    let mut out = String::from("\"");
    for c in word.chars() {
        if matches!(c, '"' | '`' | '$' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// `distrorun NAME ARGS...` as an `Exec` value.
pub fn join_exec(distrorun: &Path, distro: &str, args: &[Arg]) -> String {
    let mut words = vec![quote_arg(&distrorun.display().to_string()), quote_arg(distro)];
    for a in args {
        words.push(match a {
            Arg::Field(f) => format!("%{f}"),
            Arg::Word(w) => quote_arg(w),
        });
    }
    escape_string(&words.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn exec_lines_split_per_the_specification() {
        let args = split_exec(r#"gimp-2.10 --new "a \"b\" \\\\c" %U %i x%%y %d"#).unwrap();
        assert_eq!(
            args,
            [
                Arg::Word("gimp-2.10".into()),
                Arg::Word("--new".into()),
                Arg::Word(r#"a "b" \c"#.into()),
                Arg::Field('U'),
                Arg::Field('i'),
                Arg::Word("x%y".into()),
            ]
        );
        assert!(split_exec(r#"app "unclosed"#).is_err());
        assert!(split_exec("").is_err());
        // String escapes come first, so `\s` separates like a space.
        assert_eq!(split_exec(r"a\sb").unwrap(), [Arg::Word("a".into()), Arg::Word("b".into())]);
    }

    #[test]
    fn rewritten_exec_lines_round_trip() {
        let original = [
            Arg::Word("/opt/My App/bin/run".into()),
            Arg::Word(r#"--title=It's "fine" \ $HOME `x`"#.into()),
            Arg::Word("100%".into()),
            Arg::Field('f'),
        ];
        let line = join_exec(Path::new("/usr/bin/distrorun"), "rocky9", &original);
        let back = split_exec(&line).unwrap();
        assert_eq!(back[..2], [Arg::Word("/usr/bin/distrorun".into()), Arg::Word("rocky9".into())]);
        assert_eq!(back[2..], original);
        assert!(line.ends_with(" %f"), "{line}");
    }
}
