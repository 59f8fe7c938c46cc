//! The option "share the source over NBD while mirroring" as typed in
//! Setup and remembered in the settings, and the check of its endpoint.
//! Apart from its widget (`widgets::share`), so the job that binds the
//! share and the settings that remember it need no widget.
//!
//! NBD has no authentication, so the window only shares on this computer:
//! a unix socket or a loopback TCP address.

use std::net::IpAddr;
use std::path::PathBuf;

use livemirror_core::nbd::Endpoint;
use serde::{Deserialize, Serialize};

/// The Setup option as typed, remembered in the settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ShareSettings {
    pub enabled: bool,
    /// `unix:PATH` or `HOST:PORT` on loopback.
    pub endpoint: String,
}

impl Default for ShareSettings {
    fn default() -> Self {
        ShareSettings { enabled: false, endpoint: default_endpoint() }
    }
}

/// A socket in the user's runtime directory (private to the user, emptied
/// at logout), else in the temp directory.
fn default_endpoint() -> String {
    let dir = directories::BaseDirs::new()
        .and_then(|d| d.runtime_dir().map(PathBuf::from))
        .unwrap_or_else(std::env::temp_dir);
    let path = dir.join(format!("livemirror-{}.sock", std::process::id()));
    Endpoint::Unix(path).to_string()
}

impl ShareSettings {
    /// Where to share, `None` when the option is off; the error says why the
    /// typed endpoint cannot be used.
    pub fn endpoint(&self) -> Result<Option<Endpoint>, EndpointError> {
        if !self.enabled {
            return Ok(None);
        }
        let endpoint: Endpoint = self.endpoint.trim().parse()?;
        if let Endpoint::Tcp(addr) = &endpoint {
            refuse_remote(addr)?;
        }
        Ok(Some(endpoint))
    }
}

/// Refuses a TCP address that is plainly not this computer. A host name is
/// resolved when the share is bound, which refuses non-loopback addresses
/// too: the window never allows remote clients.
fn refuse_remote(addr: &str) -> Result<(), EndpointError> {
    let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match host.parse::<IpAddr>() {
        Ok(ip) if !ip.is_loopback() => Err(EndpointError::Remote(ip)),
        _ => Ok(()),
    }
}

/// Why a typed share endpoint cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    /// Not an endpoint at all.
    #[error(transparent)]
    Invalid(#[from] livemirror_core::nbd::EndpointError),
    #[error(
        "{0} is not this computer: NBD has no authentication, so anyone who could reach it \
         could read and overwrite the disk. Use a unix: socket or a loopback address such as \
         127.0.0.1:10809."
    )]
    Remote(IpAddr),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(endpoint: &str) -> Result<Option<Endpoint>, EndpointError> {
        ShareSettings { enabled: true, endpoint: endpoint.into() }.endpoint()
    }

    #[test]
    fn endpoints_are_checked_and_remote_ones_refused() {
        let off = ShareSettings { enabled: false, endpoint: "nonsense".into() };
        assert!(matches!(off.endpoint(), Ok(None)));
        assert_eq!(
            typed(" unix:/tmp/x.sock ").unwrap(),
            Some(Endpoint::Unix("/tmp/x.sock".into()))
        );
        assert!(typed("127.0.0.1:10809").unwrap().is_some());
        assert!(typed("[::1]:10809").unwrap().is_some());
        assert!(typed("localhost:10809").unwrap().is_some());
        assert!(typed("unix:").is_err());
        assert!(typed("10809").is_err());
        for remote in ["0.0.0.0:10809", "192.168.1.5:10809", "[2001:db8::1]:10809"] {
            let refused = typed(remote).unwrap_err();
            assert!(matches!(refused, EndpointError::Remote(_)), "{remote}");
            assert!(refused.to_string().contains("no authentication"), "{remote}");
        }
        let default = ShareSettings::default();
        assert!(!default.enabled);
        assert!(matches!(
            ShareSettings { enabled: true, ..default }.endpoint(),
            Ok(Some(Endpoint::Unix(p))) if p.to_string_lossy().ends_with(".sock")
        ));
    }
}
