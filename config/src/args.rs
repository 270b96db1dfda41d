//! Splits a command line into distrorun's own options, the distro name and
//! the command, the way `env`, `chroot` and `sudo` do: options come before
//! NAME, and everything after NAME belongs to the command, untouched and
//! byte for byte (it need not be UTF-8). An optional `--` may separate them.

use std::ffi::OsString;

use crate::Error;

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Split {
    /// distrorun's own options, `--opt=value` spelt as two words.
    pub options: Vec<String>,
    pub name: Option<String>,
    pub command: Vec<OsString>,
}

/// `takes_value` lists the options that consume the next word.
pub fn split(args: impl IntoIterator<Item = OsString>, takes_value: &[&str]) -> Result<Split, Error> {
    let mut parsed = Split::default();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let arg = utf8(arg, "option")?;
        if arg == "--" {
            if let Some(name) = args.next() {
                parsed.name = Some(utf8(name, "distro name")?);
            }
            break;
        }
        if !arg.starts_with('-') || arg == "-" {
            parsed.name = Some(arg);
            break;
        }
        let (opt, inline) = match arg.split_once('=') {
            Some((opt, value)) if opt.starts_with("--") => (opt.to_owned(), Some(value.to_owned())),
            _ => (arg, None),
        };
        let wants_value = takes_value.contains(&opt.as_str());
        parsed.options.push(opt.clone());
        match (wants_value, inline) {
            (true, Some(value)) => parsed.options.push(value),
            (true, None) => {
                let value = args.next().ok_or_else(|| Error::Usage(format!("option {opt} needs a value")))?;
                parsed.options.push(utf8(value, "option value")?);
            }
            (false, Some(_)) => return Err(Error::Usage(format!("option {opt} takes no value"))),
            (false, None) => {}
        }
    }
    let mut rest = args.peekable();
    if rest.peek().is_some_and(|a| a == "--") {
        rest.next();
    }
    parsed.command = rest.collect();
    Ok(parsed)
}

fn utf8(arg: OsString, what: &str) -> Result<String, Error> {
    arg.into_string().map_err(|a| Error::Usage(format!("{what} {a:?} is not valid UTF-8")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStringExt;

    fn s(args: &[&str]) -> Split {
        split(args.iter().map(OsString::from), &["-d", "--directory", "--extra-volume", "--backend"]).unwrap()
    }

    #[test]
    fn options_before_the_name_are_ours_and_everything_after_is_the_command() {
        let got = s(&["-v", "--extra-volume", "/data", "rocky", "ls", "-v", "--", "x"]);
        assert_eq!(got.options, ["-v", "--extra-volume", "/data"]);
        assert_eq!(got.name.as_deref(), Some("rocky"));
        assert_eq!(got.command, ["ls", "-v", "--", "x"]);
    }

    #[test]
    fn one_double_dash_after_the_name_is_dropped() {
        assert_eq!(s(&["rocky", "--", "--weird-cmd"]).command, ["--weird-cmd"]);
        assert_eq!(s(&["--", "rocky", "--", "--", "x"]).command, ["--", "x"]);
    }

    #[test]
    fn inline_values_are_split() {
        assert_eq!(s(&["--backend=helper", "x"]).options, ["--backend", "helper"]);
    }

    #[test]
    fn command_words_need_not_be_utf8() {
        let bad = OsString::from_vec(vec![0xff, 0xfe]);
        let got = split(vec!["x".into(), "echo".into(), bad.clone()], &[]).unwrap();
        assert_eq!(got.command[1], bad);
    }

    #[test]
    fn missing_values_are_usage_errors() {
        assert!(split(vec![OsString::from("-d")], &["-d"]).is_err());
        assert!(split(vec![OsString::from("--verbose=1")], &[]).is_err());
    }
}
