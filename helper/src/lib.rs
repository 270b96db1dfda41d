//! distrorun's engine: the namespaces, the mounts and the root switch that
//! both backends share, and the privilege handling of the setuid helper.
//!
//! The engine makes no policy decision: it carries out a
//! [`distrorun_config::Plan`]. This crate is the only place in distrorun with
//! `unsafe` code, all of it in [`sys`].

pub mod envfd;
mod error;
pub mod exec;
mod log;
pub mod mount;
pub mod privs;
pub mod rootfs;
pub mod sys;
pub mod userns;

pub use error::{Error, Kind};
pub use exec::Env;
pub use log::{note, Log};
