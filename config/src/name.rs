//! The distro-name grammar: `[A-Za-z0-9][A-Za-z0-9._-]*`, at most 64 bytes.
//! A name becomes a file name under a trusted directory, so it can never hold
//! `/`, start with `.`, or be empty.

use crate::Error;

pub const MAX_LEN: usize = 64;

/// Checks `name` against the grammar.
pub fn validate(name: &str) -> Result<(), Error> {
    let mut bytes = name.bytes();
    let ok = match bytes.next() {
        Some(first) if first.is_ascii_alphanumeric() => {
            bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        }
        _ => false,
    };
    if ok && name.len() <= MAX_LEN {
        Ok(())
    } else {
        Err(Error::BadName(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::validate;

    #[test]
    fn ordinary_names_are_accepted() {
        for name in ["rocky9", "debian-12", "ubuntu_22.04", "A", "9"] {
            assert!(validate(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn names_that_could_leave_the_config_directory_are_refused() {
        for name in ["", ".", "..", "../etc/x", "a/b", "/abs", ".hidden", "-opt", "a b", "a\0b", "ä"] {
            assert!(validate(name).is_err(), "{name:?}");
        }
        assert!(validate(&"a".repeat(65)).is_err());
        assert!(validate(&"a".repeat(64)).is_ok());
    }
}
