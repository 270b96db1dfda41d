pub mod remove;
pub mod unpack;
