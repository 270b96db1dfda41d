pub mod debian;
pub mod oci;
pub mod tarball;
