//! Which extended attributes of an archive are applied.
//!
//! A per-user create runs in a user namespace, where the kernel itself
//! keeps the archive's attributes harmless: it refuses `trusted.*`, and a
//! file capability becomes the namespace's own, good nowhere else.
//!
//! A system create (`--system`) runs as real root, and there the same
//! records are privileges: a file capability such as `cap_dac_read_search`
//! on a program in the new tree lets every user read any file of the host,
//! and `trusted.*` and `security.*` values (`SELinux` labels, IMA/EVM
//! signatures, overlayfs' own attributes) are what the kernel and security
//! modules trust. So as root `trusted.*` is never applied, and `security.*`
//! (file capabilities included) only where `--keep-xattr NAME` names it.

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct XattrPolicy {
    /// Running as real root, outside any user namespace.
    pub privileged: bool,
    /// `security.*` attributes the administrator asked to keep.
    pub keep: Vec<String>,
}

impl XattrPolicy {
    /// Whether the attribute `name` may be set.
    pub fn allows(&self, name: &[u8]) -> bool {
        if !self.privileged {
            return true;
        }
        if name.starts_with(b"trusted.") {
            return false;
        }
        if name.starts_with(b"security.") {
            return self.keep.iter().any(|k| k.as_bytes() == name);
        }
        true
    }
}

/// Checks a `--keep-xattr` value: only `security.*` names can be asked
/// for; `trusted.*` is never applied and the rest need no asking.
pub fn check_keep(name: &str) -> Result<(), String> {
    if name.starts_with("security.") && name.len() > "security.".len() {
        Ok(())
    } else {
        Err(format!(
            "--keep-xattr {name:?}: only security.* attributes (such as security.capability) can be kept; trusted.* never are"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::{check_keep, XattrPolicy};

    #[test]
    fn as_root_privileged_attributes_need_naming() {
        let root = XattrPolicy { privileged: true, keep: vec!["security.capability".into()] };
        assert!(root.allows(b"user.mime_type"));
        assert!(root.allows(b"security.capability"));
        assert!(!root.allows(b"security.selinux"));
        assert!(!root.allows(b"trusted.overlay.opaque"));
        let bare = XattrPolicy { privileged: true, keep: vec![] };
        assert!(!bare.allows(b"security.capability"));
        assert!(XattrPolicy::default().allows(b"security.capability"));
        assert!(check_keep("trusted.x").is_err() && check_keep("security.").is_err());
        assert!(check_keep("security.capability").is_ok());
    }
}
