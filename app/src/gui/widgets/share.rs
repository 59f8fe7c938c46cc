//! "Share the source over NBD while mirroring": the Setup option (a
//! checkbox and an endpoint, remembered) and the line on the Running, Ready
//! and Done screens that says where the share is and what it serves.
//!
//! With the share on, VMs and tools write to the source through livemirror
//! (see [`crate::session::share`]), so a disk in use can be cloned without stopping
//! what uses it. NBD has no authentication, so the window only shares on
//! this computer: a unix socket or a loopback TCP address.

use std::net::IpAddr;
use std::path::PathBuf;

use eframe::egui::{self, Color32, RichText};
use livemirror_core::job::{JobStatus, Outcome};
use livemirror_core::nbd::Endpoint;
use serde::{Deserialize, Serialize};

use crate::session::share::Share;

const RED: Color32 = Color32::from_rgb(0xe5, 0x48, 0x4d);

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
    pub fn endpoint(&self) -> Result<Option<Endpoint>, String> {
        if !self.enabled {
            return Ok(None);
        }
        let endpoint: Endpoint = self.endpoint.trim().parse()?;
        if let Endpoint::Tcp(addr) = &endpoint {
            refuse_remote(addr)?;
        }
        Ok(Some(endpoint))
    }

    /// The checkbox, the endpoint field and what the share does; a bad
    /// endpoint is explained under the field.
    pub fn ui(&mut self, ui: &mut egui::Ui) {
        ui.checkbox(&mut self.enabled, "Share the source over NBD while mirroring");
        ui.label(RichText::new("VMs and tools (qemu, nbd-client, nbdcopy) can write to the source through livemirror; every write is mirrored, and after Complete they write to the copy.").weak());
        if !self.enabled {
            return;
        }
        ui.horizontal(|ui| {
            let label = ui.label("NBD endpoint");
            ui.add(
                egui::TextEdit::singleline(&mut self.endpoint)
                    .hint_text("unix:/run/user/1000/disk.sock or 127.0.0.1:10809")
                    .desired_width(420.0),
            )
            .labelled_by(label.id);
        });
        match self.endpoint() {
            Ok(Some(e)) => {
                ui.label(RichText::new(format!("Clients will connect to {}", e.uri())).weak());
            }
            Ok(None) => {}
            Err(e) => {
                ui.label(RichText::new(format!("NBD endpoint: {e}")).color(RED));
            }
        }
    }
}

/// Refuses a TCP address that is plainly not this computer. A host name is
/// resolved when the share is bound, which refuses non-loopback addresses
/// too: the window never allows remote clients.
fn refuse_remote(addr: &str) -> Result<(), String> {
    let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match host.parse::<IpAddr>() {
        Ok(ip) if !ip.is_loopback() => Err(format!(
            "{ip} is not this computer: NBD has no authentication, so anyone who could reach it could read and overwrite the disk. Use a unix: socket or a loopback address such as 127.0.0.1:10809."
        )),
        _ => Ok(()),
    }
}

/// Where the share is, with a button that copies the URI, and whether it
/// serves the source or (after Complete) the copy.
pub fn status_ui(ui: &mut egui::Ui, share: &Share, status: &JobStatus) {
    let uri = share.endpoint().uri();
    ui.horizontal(|ui| {
        ui.label(format!("Source shared at {uri}"));
        if ui.small_button("Copy").on_hover_text("Copy the NBD URI").clicked() {
            ui.ctx().copy_text(uri.clone());
        }
        if matches!(status.outcome, Some(Outcome::Completed { .. })) {
            ui.label(RichText::new("— the share now serves the copy").strong());
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(endpoint: &str) -> Result<Option<Endpoint>, String> {
        ShareSettings { enabled: true, endpoint: endpoint.into() }.endpoint()
    }

    #[test]
    fn endpoints_are_checked_and_remote_ones_refused() {
        let off = ShareSettings { enabled: false, endpoint: "nonsense".into() };
        assert_eq!(off.endpoint(), Ok(None));
        assert_eq!(typed(" unix:/tmp/x.sock "), Ok(Some(Endpoint::Unix("/tmp/x.sock".into()))));
        assert!(typed("127.0.0.1:10809").unwrap().is_some());
        assert!(typed("[::1]:10809").unwrap().is_some());
        assert!(typed("localhost:10809").unwrap().is_some());
        assert!(typed("unix:").is_err());
        assert!(typed("10809").is_err());
        for remote in ["0.0.0.0:10809", "192.168.1.5:10809", "[2001:db8::1]:10809"] {
            assert!(typed(remote).unwrap_err().contains("no authentication"), "{remote}");
        }
        let default = ShareSettings::default();
        assert!(!default.enabled);
        assert!(matches!(
            ShareSettings { enabled: true, ..default }.endpoint(),
            Ok(Some(Endpoint::Unix(p))) if p.to_string_lossy().ends_with(".sock")
        ));
    }
}
