//! "Network disk (NBD)…": an export typed as a URI (`nbd://host/export`,
//! `nbd+unix:///?socket=PATH`, `nbds://…?tls-certificates=DIR`) and checked
//! by connecting to it — on a thread of its own, so that no frame waits on
//! the network (a server may take seconds to answer, or never). What the
//! server said (size, read-only, or why not) is shown; "Use" puts the URI
//! in the side's path.

use std::sync::mpsc;

use eframe::egui::{self, RichText};
use livemirror_core::device::{BlockDevice, NbdDevice, NbdError};

use crate::gui::action::Role;
use crate::gui::theme;
use crate::text::human;

/// The dialog for one side.
pub struct NbdEntry {
    pub role: Role,
    uri: String,
    check: Option<Connecting>,
}

/// A connection attempt: under way until its answer arrives.
struct Connecting {
    uri: String,
    answer: mpsc::Receiver<Result<String, NbdError>>,
    got: Option<Result<String, NbdError>>,
}

/// What the dialog asks of the screen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Use(String),
    Cancel,
}

impl NbdEntry {
    pub fn new(role: Role) -> Self {
        NbdEntry { role, uri: String::new(), check: None }
    }

    /// Connects on a new thread; the answer wakes the UI.
    fn connect(&mut self, ctx: &egui::Context) {
        let (tx, rx) = mpsc::channel();
        let (uri, write, ctx) =
            (self.uri.trim().to_owned(), self.role == Role::Target, ctx.clone());
        self.check = Some(Connecting { uri: uri.clone(), answer: rx, got: None });
        std::thread::spawn(move || {
            let answer = NbdDevice::open_uri(&uri, write).map(|dev| describe(&dev, write));
            // The dialog may be gone: then nobody needs the answer.
            let _ = tx.send(answer);
            ctx.request_repaint();
        });
    }

    /// Shows the dialog; returns what the user chose once they chose.
    pub fn ui(&mut self, ctx: &egui::Context) -> Option<Outcome> {
        if let Some(c) = &mut self.check
            && c.got.is_none()
        {
            c.got = c.answer.try_recv().ok();
        }
        let mut outcome = None;
        let (side, id) = match self.role {
            Role::Source => ("source", "nbd-entry-source"),
            Role::Target => ("target", "nbd-entry-target"),
        };
        egui::Modal::new(egui::Id::unique(id)).show(ctx, |ui| {
            ui.set_max_width(520.0);
            ui.heading(format!("Network disk (NBD) as the {side}"));
            ui.label(
                RichText::new(
                    "nbd://HOST[:PORT]/EXPORT, nbd+unix:///EXPORT?socket=PATH, or nbds://… with \
                     ?tls-certificates=DIR for TLS",
                )
                .weak(),
            );
            let label = ui.label("NBD URI");
            let edit = ui.add(
                egui::TextEdit::singleline(&mut self.uri)
                    .hint_text("nbd://backup-host/disk")
                    .desired_width(f32::INFINITY),
            );
            edit.labelled_by(label.id);
            let typed = self.uri.trim().to_owned();
            let connecting = self.check.as_ref().is_some_and(|c| c.got.is_none());
            let current = self.check.as_ref().filter(|c| c.uri == typed).map(|c| c.got.as_ref());
            let usable = matches!(current, Some(Some(Ok(_))));
            match current {
                Some(None) => {
                    ui.horizontal(|ui| {
                        ui.spinner();
                        ui.label(format!("Connecting to {typed}…"));
                    });
                }
                Some(Some(Ok(said))) => {
                    ui.label(RichText::new(said).color(theme::GOOD));
                }
                Some(Some(Err(e))) => {
                    ui.label(RichText::new(e.to_string()).color(theme::BAD));
                }
                None => {}
            }
            ui.horizontal(|ui| {
                let can_connect = !typed.is_empty() && !connecting;
                if ui.add_enabled(can_connect, egui::Button::new("Connect")).clicked() {
                    self.connect(ctx);
                }
                if ui.add_enabled(usable, egui::Button::new("Use")).clicked() {
                    outcome = Some(Outcome::Use(typed.clone()));
                }
                if ui.button("Cancel").clicked() {
                    outcome = Some(Outcome::Cancel);
                }
            });
        });
        outcome
    }
}

/// What a connected export is, in words.
fn describe(dev: &NbdDevice, write: bool) -> String {
    let how = if write { "writable" } else { "readable" };
    let n = dev.connections();
    let conns = if n == 1 { "1 connection".to_owned() } else { format!("{n} connections") };
    format!("Connected: {} export, {how}, {conns}.", human(dev.len()))
}
