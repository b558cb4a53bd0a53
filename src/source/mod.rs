//! Where compiler inputs come from: files and directories on disk, the examples embedded in the
//! binary, and Git repositories.

pub mod embedded;
pub mod files;
pub mod git;
