//! The commands, one module each: every one is reached from `main` with
//! the arguments it uses, and none imports another.

pub mod cache;
pub mod create;
pub mod doctor;
pub mod export;
pub mod info;
pub mod list;
pub mod remove;
pub mod run;
