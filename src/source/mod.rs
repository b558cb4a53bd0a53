//! Where compiler inputs come from: files and directories, the examples embedded in the binary,
//! the cluster (ConfigMaps, namespaces, annotated Services) and Git repositories.

pub mod cluster;
pub mod embedded;
pub mod files;
pub mod git;
pub mod objects;
pub mod scope;
