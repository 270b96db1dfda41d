//! Fixes the system paths at build time, so that neither binary ever takes
//! them from its environment or command line at run time.

use std::env;
use std::path::Path;

fn fixed_path(var: &str, default: &str) -> String {
    println!("cargo:rerun-if-env-changed={var}");
    let value = env::var(var).unwrap_or_else(|_| default.to_owned());
    let path = Path::new(&value);
    assert!(
        path.is_absolute() && !value.contains("..") && !value.contains('\n'),
        "{var} must be an absolute path without '..', got {value:?}"
    );
    value.trim_end_matches('/').to_owned()
}

fn main() {
    let sysconfdir = fixed_path("DISTRORUN_SYSCONFDIR", "/usr/local/etc");
    let libexecdir = fixed_path("DISTRORUN_LIBEXECDIR", "/usr/local/libexec");
    println!("cargo:rustc-env=DISTRORUN_SYSCONFDIR={sysconfdir}");
    println!("cargo:rustc-env=DISTRORUN_LIBEXECDIR={libexecdir}");
    // The CDI spec directories, in order (a later one wins): the standard
    // ones, or a test build's own.
    println!("cargo:rerun-if-env-changed=DISTRORUN_CDI_DIRS");
    let cdi = env::var("DISTRORUN_CDI_DIRS").unwrap_or_else(|_| "/etc/cdi:/var/run/cdi".to_owned());
    for dir in cdi.split(':') {
        assert!(
            Path::new(dir).is_absolute() && !dir.contains("..") && !dir.contains('\n'),
            "DISTRORUN_CDI_DIRS must hold absolute paths without '..', got {cdi:?}"
        );
    }
    println!("cargo:rustc-env=DISTRORUN_CDI_DIRS={cdi}");
}
