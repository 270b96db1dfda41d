//! Recognises configs written for the old C++ distrorun, in libconfig syntax
//! (`dir = "/srv/x"; mapped_volumes = ["/dev", "/home"];`), and translates
//! them to RON so that the error can show the user the file to write.
//! Nothing is ever loaded from a translation: it is only shown.

/// True when `text` looks like libconfig: its first token is a setting name
/// followed by `=` or `:`, where RON would start with `(`.
pub fn looks_like_libconfig(text: &str) -> bool {
    let Ok(tokens) = tokenize(text) else {
        return false;
    };
    matches!(tokens.as_slice(), [Tok::Ident(_), Tok::Punct('=' | ':'), ..])
}

/// Translates libconfig text to RON, or None where it uses something beyond
/// scalars, strings, arrays, lists and groups.
pub fn to_ron(text: &str) -> Option<String> {
    let tokens = tokenize(text).ok()?;
    let mut out = String::from("(\n");
    let mut pos = 0;
    settings(&tokens, &mut pos, &mut out, 1)?;
    if pos != tokens.len() {
        return None;
    }
    out.push(')');
    Some(out)
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Scalar(String),
    Punct(char),
}

fn tokenize(text: &str) -> Result<Vec<Tok>, ()> {
    let mut toks = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '#' => skip_line(&mut chars),
            '/' => {
                chars.next();
                match chars.next() {
                    Some('/') => skip_line(&mut chars),
                    Some('*') => {
                        let mut prev = ' ';
                        loop {
                            let c = chars.next().ok_or(())?;
                            if prev == '*' && c == '/' {
                                break;
                            }
                            prev = c;
                        }
                    }
                    _ => return Err(()),
                }
            }
            '"' => {
                chars.next();
                let mut s = String::from('"');
                loop {
                    let c = chars.next().ok_or(())?;
                    s.push(c);
                    if c == '\\' {
                        s.push(chars.next().ok_or(())?);
                    } else if c == '"' {
                        break;
                    }
                }
                toks.push(Tok::Str(s));
            }
            '=' | ':' | ';' | ',' | '[' | ']' | '(' | ')' | '{' | '}' => {
                chars.next();
                toks.push(Tok::Punct(c));
            }
            c if c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '+' || c == '.' => {
                let mut s = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '+' | '.' | '*') {
                        s.push(c);
                        chars.next();
                    } else {
                        break;
                    }
                }
                let first = s.chars().next().unwrap_or('0');
                if first.is_ascii_alphabetic() || first == '*' {
                    match s.to_ascii_lowercase().as_str() {
                        "true" | "false" => toks.push(Tok::Scalar(s.to_ascii_lowercase())),
                        _ => toks.push(Tok::Ident(s)),
                    }
                } else {
                    toks.push(Tok::Scalar(s));
                }
            }
            _ => return Err(()),
        }
    }
    Ok(toks)
}

fn skip_line(chars: &mut std::iter::Peekable<std::str::Chars>) {
    for c in chars.by_ref() {
        if c == '\n' {
            break;
        }
    }
}

fn indent(out: &mut String, level: usize) {
    out.extend(std::iter::repeat_n("    ", level));
}

/// `name (=|:) value (;|,)?` until the end or a closing `}`.
fn settings(t: &[Tok], pos: &mut usize, out: &mut String, level: usize) -> Option<()> {
    while let Some(Tok::Ident(name)) = t.get(*pos) {
        if !matches!(t.get(*pos + 1), Some(Tok::Punct('=' | ':'))) {
            return None;
        }
        *pos += 2;
        indent(out, level);
        out.push_str(name);
        out.push_str(": ");
        value(t, pos, out, level)?;
        out.push_str(",\n");
        if matches!(t.get(*pos), Some(Tok::Punct(';' | ','))) {
            *pos += 1;
        }
    }
    Some(())
}

fn value(t: &[Tok], pos: &mut usize, out: &mut String, level: usize) -> Option<()> {
    let tok = t.get(*pos)?.clone();
    *pos += 1;
    match tok {
        Tok::Str(s) => {
            out.push_str(&s);
            // libconfig joins adjacent strings.
            while let Some(Tok::Str(next)) = t.get(*pos) {
                out.pop();
                out.push_str(&next[1..]);
                *pos += 1;
            }
        }
        Tok::Scalar(s) => out.push_str(&s),
        Tok::Punct(open @ ('[' | '(')) => {
            let close = if open == '[' { ']' } else { ')' };
            out.push('[');
            let mut first = true;
            while !matches!(t.get(*pos), Some(Tok::Punct(c)) if *c == close) {
                if !first {
                    out.push_str(", ");
                }
                first = false;
                value(t, pos, out, level)?;
                if matches!(t.get(*pos), Some(Tok::Punct(','))) {
                    *pos += 1;
                }
            }
            *pos += 1;
            out.push(']');
        }
        Tok::Punct('{') => {
            out.push_str("(\n");
            settings(t, pos, out, level + 1)?;
            if t.get(*pos) != Some(&Tok::Punct('}')) {
                return None;
            }
            *pos += 1;
            indent(out, level);
            out.push(')');
        }
        _ => return None,
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_style_configs_are_recognised_and_translated() {
        let old =
            "# rocky\ndir = \"/srv/distros/rocky9\";\nmapped_volumes = ( \"/dev\", \"/home\" ); // binds\n";
        assert!(looks_like_libconfig(old));
        let ron = to_ron(old).unwrap();
        let d = crate::Distro::from_ron(&ron).unwrap();
        assert_eq!(d.dir, std::path::Path::new("/srv/distros/rocky9"));
        assert_eq!(d.mapped_volumes.len(), 2);
    }

    #[test]
    fn colon_style_and_groups_translate() {
        let old =
            "dir: \"/srv/x\"\nallow_setuid: TRUE\nmapped_volumes: [ { src = \"/a\"; dst = \"/b\"; } ]\n";
        assert!(looks_like_libconfig(old));
        let d = crate::Distro::from_ron(&to_ron(old).unwrap()).unwrap();
        assert!(d.allow_setuid);
        assert_eq!(d.mapped_volumes[0].dst, std::path::Path::new("/b"));
    }

    #[test]
    fn ron_is_not_mistaken_for_libconfig() {
        assert!(!looks_like_libconfig("(dir: \"/srv/x\")"));
        assert!(!looks_like_libconfig("// comment\n(\n dir: \"/x\",\n)"));
        assert!(!looks_like_libconfig(""));
    }

    #[test]
    fn garbage_does_not_translate() {
        assert_eq!(to_ron("dir = = ;"), None);
        assert_eq!(to_ron("dir = \"unterminated"), None);
    }
}
