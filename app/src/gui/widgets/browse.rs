//! "Image file…" and "New image file…" when the desktop has no file
//! dialog to offer: a file browser in the window. On Linux the system
//! dialog comes through the xdg-desktop-portal (or zenity); without either,
//! rfd would show nothing and return as if cancelled, so the window asks
//! first ([`system_dialog`]) and browses itself instead, saying which
//! package brings the desktop's own dialog. It lists one folder at a time:
//! folders first, then files with their sizes; a click on a folder opens
//! it, on a file picks its name; a folder can be typed. Folders are listed
//! on the engine, like every other disk access: a slow or hung network
//! folder says "Listing…" and the window stays responsive.

use std::path::{Path, PathBuf};
use std::time::Duration;

use eframe::egui::{self, RichText};

use crate::gui::action::Role;
use crate::gui::engine::{Engine, Newest};
use crate::text::human;

/// Entries listed at most: a folder of a million files must not make a
/// frame slow. The rest is reached by typing the name.
const MAX_ENTRIES: usize = 2000;

/// Why the window browses itself, and what brings the desktop's dialog.
pub const NO_SYSTEM_DIALOG: &str = "No file dialog service was found on this desktop (install \
     xdg-desktop-portal-gtk, or zenity, for the desktop's own dialog): browse here instead.";

/// Whether the desktop offers a file dialog rfd can show: always on
/// Windows and macOS; on Linux zenity on the PATH or the xdg-desktop-portal
/// on the session bus (running or startable).
pub fn system_dialog() -> bool {
    #[cfg(target_os = "linux")]
    {
        let zenity = std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("zenity").is_file()));
        zenity || portal().unwrap_or(false)
    }
    #[cfg(not(target_os = "linux"))]
    true
}

#[cfg(target_os = "linux")]
fn portal() -> zbus::Result<bool> {
    const PORTAL: &str = "org.freedesktop.portal.Desktop";
    let bus = zbus::blocking::Connection::session()?;
    let dbus = zbus::blocking::fdo::DBusProxy::new(&bus)?;
    Ok(dbus.name_has_owner(PORTAL.try_into()?)?
        || dbus.list_activatable_names()?.iter().any(|n| n.as_str() == PORTAL))
}

struct Entry {
    name: String,
    dir: bool,
    size: u64,
}

/// A folder's entries and how many more were left out, or why it could
/// not be listed.
type Listing = std::io::Result<(Vec<Entry>, usize)>;

/// The browser, open in a modal until a file is chosen or it is cancelled.
pub struct Browser {
    pub role: Role,
    new_file: bool,
    dir: PathBuf,
    /// The folder as typed in its field.
    dir_text: String,
    /// The folder's listing, from the engine.
    listing: Newest<PathBuf, Listing>,
    name: String,
}

/// What the user did in the browser this frame.
pub enum Picked {
    Path(PathBuf),
    Cancelled,
}

impl Browser {
    /// Opens on the folder of `near` (a path already typed), else home.
    pub fn new(role: Role, new_file: bool, near: &[&Path]) -> Self {
        let dir = near
            .iter()
            .filter_map(|p| p.parent())
            .find(|d| !d.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .or_else(|| directories::BaseDirs::new().map(|d| d.home_dir().to_path_buf()))
            .unwrap_or_else(|| PathBuf::from("/"));
        let name = if new_file { "copy.img".to_string() } else { String::new() };
        let mut b = Browser {
            role,
            new_file,
            dir: PathBuf::new(),
            dir_text: String::new(),
            listing: Newest::new(Duration::ZERO),
            name,
        };
        b.open(dir);
        b
    }

    fn open(&mut self, dir: PathBuf) {
        self.dir_text = dir.display().to_string();
        self.listing.ask(&dir);
        self.dir = dir;
    }

    /// Draws the browser; its listings are read on `engine`.
    pub fn ui(&mut self, ctx: &egui::Context, engine: &Engine) -> Option<Picked> {
        self.listing.poll(engine, ctx, |dir| list(&dir));
        let mut picked = None;
        let title = match (self.role, self.new_file) {
            (Role::Source, _) => "Source image",
            (Role::Target, false) => "Target image (will be overwritten)",
            (Role::Target, true) => "New target image",
        };
        egui::Modal::new(egui::Id::unique("file-browser")).show(ctx, |ui| {
            ui.set_width(560.0_f32.min(ctx.content_rect().width() - 60.0));
            ui.heading(title);
            ui.label(RichText::new(NO_SYSTEM_DIALOG).weak());
            ui.horizontal(|ui| {
                let up = self.dir.parent().map(Path::to_path_buf);
                if ui.add_enabled(up.is_some(), egui::Button::new("Up")).clicked()
                    && let Some(up) = up
                {
                    self.open(up);
                }
                let label = ui.label("Folder");
                let r = ui
                    .add(
                        egui::TextEdit::singleline(&mut self.dir_text).desired_width(f32::INFINITY),
                    )
                    .labelled_by(label.id);
                if r.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter)) {
                    let typed = crate::gui::paths::resolve(&self.dir_text);
                    self.open(typed);
                }
            });
            let mut enter = None;
            egui::ScrollArea::vertical().max_height(260.0).auto_shrink([false, false]).show(
                ui,
                |ui| match self.listing.answer() {
                    None => {
                        ui.label(RichText::new("Listing…").weak());
                    }
                    Some(Err(e)) => {
                        let said = format!("cannot list {}: {e}", self.dir.display());
                        ui.colored_label(crate::gui::theme::BAD, said);
                    }
                    Some(Ok((entries, more))) => {
                        if entries.is_empty() {
                            ui.label(RichText::new("(empty folder)").weak());
                        }
                        for e in entries {
                            let text = if e.dir {
                                format!("{}/", e.name)
                            } else {
                                format!("{}  ({})", e.name, human(e.size))
                            };
                            if ui.selectable_label(!e.dir && self.name == e.name, text).clicked() {
                                if e.dir {
                                    enter = Some(self.dir.join(&e.name));
                                } else {
                                    self.name = e.name.clone();
                                }
                            }
                        }
                        if *more > 0 {
                            ui.label(
                                RichText::new(format!("… and {more} more: type the name")).weak(),
                            );
                        }
                    }
                },
            );
            if let Some(dir) = enter {
                self.open(dir);
            }
            ui.horizontal(|ui| {
                let label = ui.label("File name");
                ui.add(egui::TextEdit::singleline(&mut self.name).desired_width(280.0))
                    .labelled_by(label.id);
            });
            let name = self.name.trim();
            let path = self.dir.join(name);
            // An existing file: one listed, or (past what was listed) one typed,
            // which Setup's check then finds or not.
            let exists = match self.listing.answer() {
                Some(Ok((entries, more))) => {
                    *more > 0 || entries.iter().any(|e| !e.dir && e.name == name)
                }
                _ => false,
            };
            let usable = !name.is_empty() && (self.new_file || exists);
            ui.horizontal(|ui| {
                let choose = if self.new_file { "Use this name" } else { "Choose" };
                if ui.add_enabled(usable, egui::Button::new(choose)).clicked() {
                    picked = Some(Picked::Path(path.clone()));
                }
                if ui.button("Cancel").clicked() {
                    picked = Some(Picked::Cancelled);
                }
            });
        });
        picked
    }
}

/// The folder's entries (folders first, then files, each by name; hidden
/// ones left out), at most [`MAX_ENTRIES`], and how many more there are.
fn list(dir: &Path) -> std::io::Result<(Vec<Entry>, usize)> {
    let mut entries = Vec::new();
    let mut more = 0;
    for e in std::fs::read_dir(dir)? {
        let Ok(e) = e else { continue };
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        if entries.len() == MAX_ENTRIES {
            more += 1;
            continue;
        }
        // Through links: a link to an image is an image.
        let meta = std::fs::metadata(e.path());
        let dir = meta.as_ref().is_ok_and(|m| m.is_dir());
        let size = meta.map_or(0, |m| m.len());
        entries.push(Entry { name, dir, size });
    }
    entries.sort_by(|a, b| b.dir.cmp(&a.dir).then_with(|| a.name.cmp(&b.name)));
    Ok((entries, more))
}
