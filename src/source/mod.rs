//! Where compiler inputs come from. This session: files and directories on disk, and the
//! examples embedded in the binary.

pub mod embedded;
pub mod files;
