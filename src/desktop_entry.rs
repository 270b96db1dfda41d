//! Desktop entries, as the Desktop Entry Specification 1.5 has them: a
//! value is first unescaped as a string (`\s`, `\n`, `\t`, `\r`, `\\`),
//! then split into arguments, where double quotes group and a backslash
//! escapes `"`, `` ` ``, `$` and `\` inside them. Field codes (`%f`, `%U`,
//! ...) stand alone and are kept for the host's launcher to expand.

use std::path::Path;

/// The value of `key` in the `[Desktop Entry]` group.
pub fn desktop_value(text: &str, key: &str) -> Option<String> {
    let mut in_main = false;
    for line in text.lines() {
        let line = line.trim_end();
        if line.starts_with('[') {
            in_main = line == "[Desktop Entry]";
        } else if in_main {
            if let Some((k, v)) = line.split_once('=') {
                if k.trim_end() == key {
                    return Some(v.trim_start().to_owned());
                }
            }
        }
    }
    None
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
