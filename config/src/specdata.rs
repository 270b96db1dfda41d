//! The data of a CDI spec as a tree, from JSON or from the YAML that
//! `nvidia-ctk cdi generate` and its peers write: block mappings and
//! sequences (a sequence may sit at its key's indentation), plain, single-
//! and double-quoted scalars, flow sequences and mappings, comments and a
//! leading `---`. Anchors, tags, block scalars and multi-document streams
//! are refused: no spec generator writes them. Small enough to be read in
//! full by anyone auditing the setuid helper, which links it.

/// A parsed document. Numbers, booleans and null stay as the text they were
/// written as; the CDI fields that are numbers are read from that text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Scalar(String),
    List(Vec<Value>),
    Map(Vec<(String, Value)>),
}

/// Nesting deeper than this is not a spec.
const MAX_DEPTH: usize = 64;

impl Value {
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Map(entries) => entries.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Scalar(s) => Some(s),
            _ => None,
        }
    }

    /// The items of a list; an absent or null field is an empty list.
    pub fn items(&self) -> &[Value] {
        match self {
            Value::List(items) => items,
            _ => &[],
        }
    }

    /// A list of strings, the non-strings left out.
    pub fn strings(&self) -> Vec<String> {
        self.items().iter().filter_map(Value::as_str).map(str::to_owned).collect()
    }
}

/// Parses a spec's text: JSON when it starts with `{`, else YAML.
pub fn parse(text: &str) -> Result<Value, String> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') {
        let mut p = Flow { s: trimmed.as_bytes(), i: 0, json: true };
        let v = p.value(0)?;
        p.skip_ws();
        if p.i != p.s.len() {
            return Err(format!("unexpected text after the JSON document at byte {}", p.i));
        }
        return Ok(v);
    }
    yaml(text)
}

/// A JSON document, or a YAML flow collection or scalar.
struct Flow<'a> {
    s: &'a [u8],
    i: usize,
    json: bool,
}

impl Flow<'_> {
    fn skip_ws(&mut self) {
        while self.i < self.s.len() && matches!(self.s[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn value(&mut self, depth: usize) -> Result<Value, String> {
        if depth > MAX_DEPTH {
            return Err("nested too deeply".into());
        }
        self.skip_ws();
        match self.peek() {
            Some(b'{') => self.collection(depth, b'}').map(|(_, map)| Value::Map(map)),
            Some(b'[') => self.collection(depth, b']').map(|(list, _)| Value::List(list)),
            Some(b'"') => self.double_quoted().map(Value::Scalar),
            Some(b'\'') if !self.json => self.single_quoted().map(Value::Scalar),
            Some(_) => self.plain().map(Value::Scalar),
            None => Err("unexpected end of the document".into()),
        }
    }

    /// `{...}` or `[...]`; returns the list or the map, whichever it was.
    #[allow(clippy::type_complexity)]
    fn collection(&mut self, depth: usize, close: u8) -> Result<(Vec<Value>, Vec<(String, Value)>), String> {
        self.i += 1;
        let (mut list, mut map) = (Vec::new(), Vec::new());
        loop {
            self.skip_ws();
            if self.peek() == Some(close) {
                self.i += 1;
                return Ok((list, map));
            }
            if close == b'}' {
                let Value::Scalar(key) = self.value(depth + 1)? else {
                    return Err(format!("a mapping key must be a string at byte {}", self.i));
                };
                self.skip_ws();
                if self.peek() != Some(b':') {
                    return Err(format!("expected ':' at byte {}", self.i));
                }
                self.i += 1;
                map.push((key, self.value(depth + 1)?));
            } else {
                list.push(self.value(depth + 1)?);
            }
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(c) if c == close => {}
                _ => return Err(format!("expected ',' or '{}' at byte {}", char::from(close), self.i)),
            }
        }
    }

    fn double_quoted(&mut self) -> Result<String, String> {
        self.i += 1;
        let mut out = Vec::new();
        loop {
            let Some(c) = self.peek() else { return Err("unterminated string".into()) };
            self.i += 1;
            match c {
                b'"' => return String::from_utf8(out).map_err(|_| "a string is not UTF-8".into()),
                b'\\' => {
                    let Some(e) = self.peek() else { return Err("unterminated string".into()) };
                    self.i += 1;
                    let ch = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'n' => '\n',
                        b't' => '\t',
                        b'r' => '\r',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'0' if !self.json => '\0',
                        b'u' => self.unicode_escape()?,
                        _ => return Err(format!("unknown escape \\{} at byte {}", char::from(e), self.i)),
                    };
                    let mut buf = [0; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                }
                _ => out.push(c),
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let digits = self.s.get(self.i..self.i + 4).ok_or("a short \\u escape")?;
        self.i += 4;
        let text = std::str::from_utf8(digits).map_err(|_| "a bad \\u escape")?;
        u32::from_str_radix(text, 16).map_err(|_| "a bad \\u escape".into())
    }

    fn unicode_escape(&mut self) -> Result<char, String> {
        let mut code = self.hex4()?;
        if (0xD800..0xDC00).contains(&code) && self.s.get(self.i..self.i + 2) == Some(b"\\u") {
            self.i += 2;
            let low = self.hex4()?;
            code = 0x10000 + ((code - 0xD800) << 10) + (low.wrapping_sub(0xDC00) & 0x3FF);
        }
        char::from_u32(code).ok_or_else(|| "a \\u escape that is no character".into())
    }

    fn single_quoted(&mut self) -> Result<String, String> {
        self.i += 1;
        let mut out = Vec::new();
        loop {
            let Some(c) = self.peek() else { return Err("unterminated string".into()) };
            self.i += 1;
            if c == b'\'' {
                if self.peek() == Some(b'\'') {
                    self.i += 1;
                    out.push(b'\'');
                    continue;
                }
                return String::from_utf8(out).map_err(|_| "a string is not UTF-8".into());
            }
            out.push(c);
        }
    }

    /// A bare word: a JSON number, `true`, `false` or `null`, or a YAML
    /// plain scalar inside a flow collection.
    fn plain(&mut self) -> Result<String, String> {
        let start = self.i;
        while let Some(c) = self.peek() {
            if matches!(c, b',' | b']' | b'}' | b'\n') || (c == b':' && self.json) {
                break;
            }
            if c == b':' && matches!(self.s.get(self.i + 1), None | Some(b' ' | b',' | b']' | b'}')) {
                break;
            }
            self.i += 1;
        }
        let word = std::str::from_utf8(&self.s[start..self.i]).map_err(|_| "text is not UTF-8")?.trim();
        if word.is_empty() {
            return Err(format!("expected a value at byte {start}"));
        }
        if self.json
            && !(word.bytes().all(|b| b"0123456789+-.eE".contains(&b))
                || ["true", "false", "null"].contains(&word))
        {
            return Err(format!("unexpected {word:?} at byte {start}"));
        }
        Ok(word.to_owned())
    }
}

/// One significant line: its indentation and its text, comment removed.
struct Line<'a> {
    no: usize,
    indent: usize,
    text: &'a str,
}

fn yaml(text: &str) -> Result<Value, String> {
    let mut lines = Vec::new();
    for (no, raw) in text.lines().enumerate() {
        let no = no + 1;
        let body = strip_comment(raw).trim_end();
        let trimmed = body.trim_start();
        if trimmed.is_empty() || (lines.is_empty() && (trimmed == "---" || trimmed.starts_with('%'))) {
            continue;
        }
        if trimmed == "---" || trimmed == "..." {
            return Err(format!("line {no}: only one document is read"));
        }
        if body.starts_with('\t') {
            return Err(format!("line {no}: a tab in the indentation"));
        }
        lines.push(Line { no, indent: body.len() - trimmed.len(), text: trimmed });
    }
    if lines.is_empty() {
        return Err("the document is empty".into());
    }
    let mut y = Yaml { lines, at: 0 };
    let indent = y.lines[0].indent;
    let v = y.node(indent, 0)?;
    match y.lines.get(y.at) {
        Some(l) => Err(format!("line {}: unexpected indentation", l.no)),
        None => Ok(v),
    }
}

/// The text before a ` #` comment that is not inside quotes.
fn strip_comment(line: &str) -> &str {
    let (mut single, mut double) = (false, false);
    let bytes = line.as_bytes();
    for (i, &c) in bytes.iter().enumerate() {
        match c {
            b'\'' if !double => single = !single,
            b'"' if !single => double = !double,
            b'#' if !single && !double && (i == 0 || bytes[i - 1] == b' ') => return &line[..i],
            _ => {}
        }
    }
    line
}

struct Yaml<'a> {
    lines: Vec<Line<'a>>,
    at: usize,
}

impl Yaml<'_> {
    /// The block starting at the current line, whose indentation is `indent`.
    fn node(&mut self, indent: usize, depth: usize) -> Result<Value, String> {
        if depth > MAX_DEPTH {
            return Err("nested too deeply".into());
        }
        let line = &self.lines[self.at];
        if is_item(line.text) {
            self.sequence(indent, depth)
        } else if split_key(line.text).is_some() {
            self.mapping(indent, depth)
        } else {
            self.at += 1;
            scalar(line.text, line.no)
        }
    }

    fn sequence(&mut self, indent: usize, depth: usize) -> Result<Value, String> {
        let mut items = Vec::new();
        while let Some(line) = self.lines.get(self.at) {
            if line.indent != indent || !is_item(line.text) {
                break;
            }
            let rest = line.text[1..].trim_start();
            let no = line.no;
            if rest.is_empty() {
                self.at += 1;
                items.push(self.nested(indent, depth)?);
            } else if split_key(rest).is_some() && !rest.starts_with(['"', '\'', '[', '{']) {
                // `- key: value` opens a mapping indented where `key` is.
                let inner = indent + (line.text.len() - rest.len());
                self.lines[self.at] = Line { no, indent: inner, text: rest };
                items.push(self.mapping(inner, depth + 1)?);
            } else {
                self.at += 1;
                items.push(scalar(rest, no)?);
            }
        }
        Ok(Value::List(items))
    }

    fn mapping(&mut self, indent: usize, depth: usize) -> Result<Value, String> {
        let mut entries = Vec::new();
        while let Some(line) = self.lines.get(self.at) {
            if line.indent != indent || is_item(line.text) {
                if line.indent > indent {
                    return Err(format!("line {}: unexpected indentation", line.no));
                }
                break;
            }
            let no = line.no;
            let (key, rest) =
                split_key(line.text).ok_or_else(|| format!("line {no}: expected `key: value`"))?;
            let Value::Scalar(key) = scalar(key, no)? else {
                return Err(format!("line {no}: a key must be a string"));
            };
            self.at += 1;
            let value = if rest.is_empty() {
                // A sequence may sit at the key's own indentation.
                match self.lines.get(self.at) {
                    Some(next) if next.indent == indent && is_item(next.text) => {
                        self.sequence(indent, depth + 1)?
                    }
                    _ => self.nested(indent, depth)?,
                }
            } else {
                scalar(rest, no)?
            };
            entries.push((key, value));
        }
        Ok(Value::Map(entries))
    }

    /// The block indented deeper than `indent` that follows, or null.
    fn nested(&mut self, indent: usize, depth: usize) -> Result<Value, String> {
        match self.lines.get(self.at) {
            Some(next) if next.indent > indent => {
                let inner = next.indent;
                self.node(inner, depth + 1)
            }
            _ => Ok(Value::Scalar("null".into())),
        }
    }
}

fn is_item(text: &str) -> bool {
    text == "-" || text.starts_with("- ")
}

/// `key: rest` at the first `: ` (or final `:`) outside quotes.
fn split_key(text: &str) -> Option<(&str, &str)> {
    let bytes = text.as_bytes();
    let (mut single, mut double) = (false, false);
    for (i, &c) in bytes.iter().enumerate() {
        match c {
            b'\'' if !double && i == 0 => single = true,
            b'\'' if single => single = false,
            b'"' if !single && (i == 0 || double) && !(double && bytes[i - 1] == b'\\') => double = !double,
            b':' if !single && !double && matches!(bytes.get(i + 1), None | Some(b' ')) => {
                return Some((text[..i].trim_end(), text[i + 1..].trim_start()));
            }
            _ => {}
        }
    }
    None
}

fn scalar(text: &str, no: usize) -> Result<Value, String> {
    if text.starts_with(['&', '*', '!', '|', '>']) {
        return Err(format!("line {no}: anchors, aliases, tags and block scalars are not read"));
    }
    if text.starts_with(['"', '\'', '[', '{']) {
        let mut p = Flow { s: text.as_bytes(), i: 0, json: false };
        let v = p.value(0).map_err(|e| format!("line {no}: {e}"))?;
        p.skip_ws();
        if p.i != p.s.len() {
            return Err(format!("line {no}: unexpected text after a value"));
        }
        return Ok(v);
    }
    Ok(Value::Scalar(text.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Value {
        Value::Scalar(v.into())
    }

    #[test]
    fn yaml_as_nvidia_ctk_writes_it() {
        let text = "---\ncdiVersion: 0.5.0\ncontainerEdits:\n  env:\n  - NVIDIA_VISIBLE_DEVICES=void\n  hooks:\n  - args:\n    - nvidia-cdi-hook\n    - create-symlinks\n    - --link\n    - libcuda.so.1::/usr/lib/x86_64-linux-gnu/libcuda.so\n    hookName: createContainer # a comment\n    path: /usr/bin/nvidia-cdi-hook\ndevices:\n- containerEdits:\n    deviceNodes:\n    - path: /dev/nvidia0\n  name: \"0\"\nkind: 'nvidia.com/gpu'\nempty: []\n";
        let v = parse(text).unwrap();
        assert_eq!(v.get("cdiVersion"), Some(&s("0.5.0")));
        assert_eq!(v.get("kind"), Some(&s("nvidia.com/gpu")));
        let edits = v.get("containerEdits").unwrap();
        assert_eq!(edits.get("env").unwrap().strings(), ["NVIDIA_VISIBLE_DEVICES=void"]);
        let hook = &edits.get("hooks").unwrap().items()[0];
        assert_eq!(
            hook.get("args").unwrap().strings()[3],
            "libcuda.so.1::/usr/lib/x86_64-linux-gnu/libcuda.so"
        );
        assert_eq!(hook.get("hookName"), Some(&s("createContainer")));
        let dev = &v.get("devices").unwrap().items()[0];
        assert_eq!(dev.get("name"), Some(&s("0")));
        let node = &dev.get("containerEdits").unwrap().get("deviceNodes").unwrap().items()[0];
        assert_eq!(node.get("path"), Some(&s("/dev/nvidia0")));
        assert_eq!(v.get("empty"), Some(&Value::List(vec![])));
    }

    #[test]
    fn json_with_escapes() {
        let v = parse(r#"{"kind": "a.com/b", "n": [1, true, null], "s": "x\"\u00e9\ud83d\ude00"}"#).unwrap();
        assert_eq!(v.get("kind"), Some(&s("a.com/b")));
        assert_eq!(v.get("n").unwrap().strings(), ["1", "true", "null"]);
        assert_eq!(v.get("s"), Some(&s("x\"é😀")));
        assert!(parse(r#"{"a": bad}"#).is_err());
        assert!(parse(r#"{"a": 1} x"#).is_err());
        assert!(parse(&"[".repeat(100)).is_err());
    }

    #[test]
    fn what_is_not_read_is_refused() {
        assert!(parse("a: &x 1\n").is_err());
        assert!(parse("a: |\n  text\n").is_err());
        assert!(parse("a: 1\n---\nb: 2\n").is_err());
        assert!(parse("a: 1\n   b: 2\n").is_err());
        assert!(parse("").is_err());
    }
}
