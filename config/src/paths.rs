//! Paths fixed at build time from `DISTRORUN_SYSCONFDIR` and
//! `DISTRORUN_LIBEXECDIR`.

/// The directory that holds `distrorun.d/`.
pub const SYSCONFDIR: &str = env!("DISTRORUN_SYSCONFDIR");
/// The directory that holds `distrorun/distrorun-helper`.
pub const LIBEXECDIR: &str = env!("DISTRORUN_LIBEXECDIR");

/// Where system-wide distro configs live.
pub fn system_config_dir() -> std::path::PathBuf {
    std::path::Path::new(SYSCONFDIR).join("distrorun.d")
}

/// The only path from which `distrorun` ever runs the setuid helper.
pub fn helper_path() -> std::path::PathBuf {
    std::path::Path::new(LIBEXECDIR).join("distrorun/distrorun-helper")
}
