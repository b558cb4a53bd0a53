//! API types of hangar's custom resources (group `mcp-hangar.io`, version `v1alpha1`), the catalog
//! format, and the schemas generated from them. This module is the one source of `crds/` and `schema/`.

pub mod catalog;
// kube's printcolumn(...) attributes repeat `type_ = ...`, which this lint mistakes for duplicates.
#[allow(clippy::duplicated_attributes)]
pub mod discovery;
// kube's printcolumn(...) attributes repeat `type_ = ...`, which this lint mistakes for duplicates.
#[allow(clippy::duplicated_attributes)]
pub mod group;
pub mod schema;
// kube's printcolumn(...) attributes repeat `type_ = ...`, which this lint mistakes for duplicates.
#[allow(clippy::duplicated_attributes)]
pub mod server;

pub use discovery::{MCPDiscoverySource, MCPDiscoverySourceSpec, MCPDiscoverySourceStatus};
pub use group::{MCPServerGroup, MCPServerGroupSpec, MCPServerGroupStatus};
pub use server::{MCPServer, MCPServerSpec, MCPServerStatus};

pub const GROUP: &str = "mcp-hangar.io";
pub const VERSION: &str = "v1alpha1";
pub const API_VERSION: &str = "mcp-hangar.io/v1alpha1";

/// The kinds hangar serves, plus the legacy kinds the compiler converts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Server,
    Group,
    DiscoverySource,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Server => "MCPServer",
            Kind::Group => "MCPServerGroup",
            Kind::DiscoverySource => "MCPDiscoverySource",
        }
    }

    /// Maps a `kind:` value to a kind; the second value is true for a legacy name.
    pub fn parse(kind: &str) -> Option<(Kind, bool)> {
        match kind {
            "MCPServer" => Some((Kind::Server, false)),
            "MCPServerGroup" => Some((Kind::Group, false)),
            "MCPDiscoverySource" => Some((Kind::DiscoverySource, false)),
            "MCPProvider" => Some((Kind::Server, true)),
            "MCPProviderGroup" => Some((Kind::Group, true)),
            _ => None,
        }
    }

    pub const ALL: [Kind; 3] = [Kind::Server, Kind::Group, Kind::DiscoverySource];
}
