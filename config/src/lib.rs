//! Everything distrorun decides before it touches the kernel: the distro-name
//! grammar, the config schema and where configs are found, the trust checks
//! the setuid helper applies to them, and the [`Plan`] that the engine carries
//! out. Both binaries share this crate, so that both backends decide alike.

pub mod access;
pub mod args;
pub mod cdi;
mod error;
pub mod gpu;
pub mod handoff;
pub mod ldcache;
pub mod libconfig;
pub mod load;
pub mod name;
pub mod nss;
pub mod paths;
pub mod plan;
pub mod schema;
pub mod specdata;
pub mod trust;
pub mod userdb;

pub use error::{errno_of, Error};
pub use load::{Found, Origin};
pub use plan::{Attrs, Command, MountSpec, Plan, Request, SourceChecks, VolumeOrigin};
pub use schema::{BackendChoice, Distro, IdMode, ImageOrigin, Volume};
pub use userdb::UserDb;
