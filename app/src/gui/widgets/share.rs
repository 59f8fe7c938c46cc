//! "Share the source over NBD while mirroring": the Setup option (a
//! checkbox and an endpoint, remembered) and the line on the Running, Ready
//! and Done screens that says where the share is and what it serves.
//!
//! With the share on, VMs and tools write to the source through livemirror
//! (see [`crate::session::share`]), so a disk in use can be cloned without stopping
//! what uses it. The option itself and the check of its endpoint are in
//! [`crate::gui::share_option`].

use eframe::egui::{self, RichText};
use livemirror_core::job::{JobStatus, Outcome};

use crate::gui::share_option::ShareSettings;
use crate::gui::theme;
use crate::session::share::Share;

impl ShareSettings {
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
                ui.label(RichText::new(format!("NBD endpoint: {e}")).color(theme::BAD));
            }
        }
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
