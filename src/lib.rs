//! hangar: run MCP servers on Kubernetes declaratively.
#![forbid(unsafe_code)]

pub mod api;
pub mod apply;
pub mod cli;
pub mod compile;
pub mod connect;
pub mod controller;
pub mod diff;
pub mod gateway;
pub mod logging;
pub mod probe;
pub mod source;
pub mod yaml;
