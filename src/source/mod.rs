pub mod archive;
pub mod debian;
pub mod image;
pub mod oci;
pub mod tarball;
