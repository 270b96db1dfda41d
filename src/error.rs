//! The one way an `io::Error` becomes distrorun's error: with its errno
//! kept, so that it reads as every other failure does, `cannot WHAT: ERRNO`.

use distrorun_engine::Error;
use nix::errno::Errno;

/// `cannot WHAT: ERRNO`; an error the kernel did not report (a short read
/// in a decoder, say) keeps its own words.
pub fn io(what: impl Into<String>, e: &std::io::Error) -> Error {
    match e.raw_os_error() {
        Some(n) => Error::sys(what, Errno::from_raw(n)),
        None => Error::msg(format!("cannot {}: {e}", what.into())),
    }
}

/// What went wrong, as the errno's description where the kernel reported
/// one, and in the error's own words otherwise.
pub fn text(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => Errno::from_raw(n).desc().to_owned(),
        None => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::io;

    #[test]
    fn the_errno_is_kept() {
        let e = std::io::Error::from_raw_os_error(nix::errno::Errno::EACCES as i32);
        assert_eq!(io("open /x", &e).to_string(), "cannot open /x: Permission denied");
        let e = std::io::Error::new(std::io::ErrorKind::InvalidData, "bad block");
        assert_eq!(io("read /x", &e).to_string(), "cannot read /x: bad block");
    }
}
