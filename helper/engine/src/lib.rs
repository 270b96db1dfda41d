//! distrorun's engine: the namespaces, the mounts, the root switch and the
//! exec that both backends share. The unprivileged front end runs it inside
//! a user namespace; the setuid helper runs it in a mount namespace, with
//! the one capability it needs raised only while it mounts (see
//! [`rootfs::MountPrivilege`]).
//!
//! The engine makes no policy decision: it carries out a
//! [`distrorun_config::Plan`], checks included. The one module the
//! workspace's lints let bypass Rust's safety checks is [`sys`]; around it,
//! one module per kernel concept.

pub mod binfmt;
pub mod error;
pub mod exec;
pub mod gpu;
mod legacy;
mod log;
pub mod mount;
pub mod resolve;
pub mod rootfs;
pub mod sys;
pub mod userdb;
pub mod userns;

pub use error::{Error, Kind};
pub use exec::Env;
pub use log::{note, Log};
