//! The Setup screen: pick a source and a target (a disk from the list, an
//! image through the file dialog, or a typed path), set the options (and
//! whether to share the source over NBD), Start.
//!
//! Nothing is ever chosen for the user as target. Every problem that would
//! make the engine refuse the pair (same device, a smaller target that
//! cannot take the source, target read-only or mounted) is shown inline before Start, and Start stays
//! disabled; overwriting a whole disk needs its name typed.
//!
//! The pair is checked on the engine, never in a frame: opening a device
//! may take seconds or hang, and typing must stay smooth. Until the check
//! of the pair as it is now typed has answered, the screen says it is
//! checking and Start stays disabled.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use eframe::egui::{self, RichText};
use livemirror_core::Error;
use livemirror_core::device::{BlockDevice, DeviceId, ImageFormat};
use livemirror_core::flash::Compression;
use livemirror_core::job::{self, CopyMode, ErrorPolicy, MirrorOptions, SyncMode};
use livemirror_core::partition::{self, Fit, Relation};

use crate::gui::action::{Action, Role};
use crate::gui::engine::{Engine, Newest, Opener};
use crate::gui::flash::FlashRequest;
use crate::gui::job::StartRequest;
use crate::gui::paths;
use crate::gui::settings::Settings;
use crate::gui::share_option::ShareSettings;
use crate::gui::theme;
use crate::gui::widgets::nbd_entry::{self, NbdEntry};
use crate::gui::widgets::speed::SpeedControl;
use crate::platform::disks::Disk;
use crate::session::flash::FlashTargetError;
use crate::text::{self, human};

/// What the screen knows about the chosen pair.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Check {
    /// Reasons Start is disabled, in words for the user.
    pub problems: Vec<String>,
    /// What will happen (a new image file, a disk overwritten).
    pub notes: Vec<String>,
    /// Both sides chosen.
    pub chosen: bool,
    /// The name to type before a disk is overwritten.
    pub confirm_name: Option<String>,
    /// The source's size, once it could be opened.
    pub source_len: Option<u64>,
    /// How the target's size fits the source's, when the pair is fine.
    pub fit: Option<Fit>,
    /// The source is a compressed image: Start writes it, no mirror job.
    pub flash: Option<Compression>,
    /// The target path exists, so "Verify only" can compare it: found on
    /// the engine with the rest, as a stat can hang like an open (a dead
    /// network mount) and a frame must not wait for it.
    pub target_exists: bool,
}

impl Check {
    /// The check of a pair that needs no I/O: a side not chosen yet, or an
    /// NBD export (connecting to a server may take seconds: Start
    /// connects, and reports what is wrong there). `None`: the pair must
    /// be opened, with [`Check::of`] on the engine.
    pub fn at_once(source: &str, target: &str) -> Option<Check> {
        let mut c = Check::default();
        if source.trim().is_empty() || target.trim().is_empty() {
            return Some(c);
        }
        c.chosen = true;
        let remote: Vec<_> = [paths::resolve(source), paths::resolve(target)]
            .into_iter()
            .filter(|p| crate::platform::privileged::nbd_uri(p).is_some())
            .collect();
        for uri in &remote {
            c.notes.push(format!(
                "{} is an NBD export: it is connected to when you press Start.",
                uri.display()
            ));
        }
        (!remote.is_empty()).then_some(c)
    }

    /// Checks the typed pair. Opens both (no reads or writes: open and
    /// fstat), the source for writing when it is to be shared (its clients
    /// write it), and reads the mount table: blocking, so on the engine,
    /// once per pair (see [`SetupScreen::check`]).
    pub fn of(
        source: &str,
        target: &str,
        shared: bool,
        opener: &dyn Opener,
        disks: &[Disk],
    ) -> Check {
        if let Some(c) = Check::at_once(source, target) {
            return c;
        }
        let (source_path, target_path) = (paths::resolve(source), paths::resolve(target));
        let target_exists = opener.exists(&target_path);
        let mut c = Check { chosen: true, target_exists, ..Check::default() };
        let (source, target) =
            (source_path.display().to_string(), target_path.display().to_string());
        let listed = |p: &Path| disks.iter().find(|d| d.path == p);
        // A compressed image is a stream (the content is read: on the engine).
        if let Some(format) = Compression::of_file(&source_path) {
            c.flash_target(format, &target_path, shared, opener, listed(&target_path));
            return c;
        }
        if let Some(problem) = new_zst(&source_path, &target_path, target_exists) {
            c.problems.push(problem);
            return c;
        }
        let src = match opener.open(&source_path, shared) {
            Ok(d) => Some(d),
            Err(e) if crate::platform::privileged::needs_helper(&e, &source_path) => {
                c.notes.push(authorization_note(&source));
                None
            }
            Err(e) => {
                c.problems.push(format!("Source: {e}"));
                None
            }
        };
        c.source_len = src.as_ref().map(|s| s.len()).or(listed(&source_path).map(|d| d.size));
        if !shared && crate::session::tracking::is_block_device(&source_path) {
            // Opened, its own mounts; not yet (authorization at Start), the
            // disk list's.
            let mounted = match &src {
                Some(s) => !livemirror_core::device::mounts_on(&s.id()).is_empty(),
                None => listed(&source_path).is_some_and(|d| !d.mounts.is_empty()),
            };
            c.notes.push(crate::text::kernel_choice(mounted).into());
        } else if !shared && crate::session::tracking::lease_possible() {
            // A file: a read lease notices who else opens it for writing.
            c.notes.push(crate::text::lease_choice().into());
        } else if !shared {
            // A file, where nothing sees who else writes it.
            let untracked = crate::text::tracking(livemirror_core::job::Tracking::None);
            c.notes.push(crate::text::sentence(untracked));
        }
        if !target_exists {
            if let Some(problem) = missing_folder(&target_path) {
                c.problems.push(problem);
            } else if let Some(s) = &src {
                let kind = match ImageFormat::of_new_name(&target_path) {
                    ImageFormat::Qcow2 => "qcow2 image",
                    ImageFormat::Raw => "image file",
                };
                c.notes.push(format!(
                    "A new {kind} will be created at {target}, {} like the source (sparse: it takes only the space of what is copied).",
                    human(s.len())
                ));
            }
            return c;
        }
        let dst = match opener.open(&target_path, true) {
            Ok(d) => Some(d),
            Err(e) if crate::platform::privileged::needs_helper(&e, &target_path) => {
                c.notes.push(authorization_note(&target));
                None
            }
            Err(e) => {
                c.problems.push(target_open_problem(&e));
                None
            }
        };
        let disk = listed(&target_path);
        match (&src, &dst, disk) {
            // Data past the partitions is looked for at Start: on a disk
            // that can take minutes, too long for a screen that checks as
            // the user types.
            (Some(s), Some(d), _) => c.judge(job::preview_pair(&**s, &**d), shared, &source),
            // A disk this user may not open: what the disk list knows of it
            // (read without privileges) is checked now, before its name is
            // asked for, not after the authorization at Start.
            (_, None, Some(disk)) => c.judge_listed(disk, src.as_deref(), &source_path, shared),
            _ => {}
        }
        c.confirm_overwrite(&target_path, disk);
        c
    }

    /// A disk as the target, with no problem found: everything on it goes,
    /// once its name is typed.
    fn confirm_overwrite(&mut self, target_path: &Path, disk: Option<&Disk>) {
        let target = target_path.display().to_string();
        let is_device =
            disk.is_some() || target.starts_with("/dev/") || target.starts_with(r"\\.\");
        if is_device && self.problems.is_empty() {
            let name = disk.map_or_else(|| file_name(target_path), |d| d.name.clone());
            let mut note = format!("Everything on {name} will be overwritten.");
            if disk.is_some_and(|d| d.system) {
                note = format!("{name} is the SYSTEM DISK of this computer. {note}");
            }
            self.notes.push(note);
            self.confirm_name = Some(name);
        }
    }

    /// The target of a compressed image (see [`crate::gui::flash`]): a new
    /// raw file (not qcow2: its size is not known up front), or an
    /// existing one that can be written and is not mounted; never shared.
    fn flash_target(
        &mut self,
        format: Compression,
        target_path: &Path,
        shared: bool,
        opener: &dyn Opener,
        disk: Option<&Disk>,
    ) {
        self.flash = Some(format);
        self.notes.push(text::flash::note(format));
        if shared {
            self.problems.push(text::flash::not_shared(format));
        }
        if !self.target_exists {
            if let Some(problem) = missing_folder(target_path) {
                self.problems.push(problem);
            } else if ImageFormat::of_new_name(target_path) == ImageFormat::Qcow2 {
                let e = FlashTargetError::NewQcow2FromStream { compression: format };
                self.problems.push(text::sentence(&e.to_string()));
            } else {
                self.notes.push(text::flash::new_file(target_path));
            }
            return;
        }
        match opener.open(target_path, true) {
            Ok(_) => {}
            Err(e) if crate::platform::privileged::needs_helper(&e, target_path) => {
                self.notes.push(authorization_note(&target_path.display().to_string()))
            }
            Err(e) => self.problems.push(target_open_problem(&e)),
        }
        if let Some(d) = disk.filter(|d| !d.mounts.is_empty()) {
            let target = d.path.display().to_string();
            let mounted = Error::TargetMounted { target, mounts: d.mounts.clone() };
            self.problems.push(pair_problem(&mounted, ""));
        }
        self.confirm_overwrite(target_path, disk);
    }

    /// How the target's size fits the source's: a problem, or a note and the fit.
    fn judge(&mut self, fit: Result<Fit, Error>, shared: bool, source: &str) {
        match fit {
            Err(e) => self.problems.push(pair_problem(&e, source)),
            Ok(fit) if fit.relation() == Relation::Smaller && shared => self.problems.push(
                format!("The target is {fit}, but a smaller target cannot take over the NBD share (its clients see the source's size): turn sharing off or pick a target at least as large."),
            ),
            Ok(fit) => {
                if fit.relation() != Relation::Same {
                    self.notes.push(format!("The target is {fit}."));
                }
                self.fit = Some(fit);
            }
        }
    }

    /// The checks of a listed disk that could not be opened: read-only,
    /// mounted (the system disk is), and its size against the source's
    /// partitions (or, when the source cannot be read either, its size).
    fn judge_listed(
        &mut self,
        disk: &Disk,
        src: Option<&dyn BlockDevice>,
        source_path: &Path,
        shared: bool,
    ) {
        let source = source_path.display().to_string();
        if disk.path == source_path {
            self.problems
                .push(pair_problem(&Error::SameDevice { target: source.clone() }, &source));
            return;
        }
        if disk.read_only {
            self.problems.push(format!(
                "The target {} is read-only: livemirror must be able to write it.",
                disk.path.display()
            ));
        }
        if !disk.mounts.is_empty() {
            let target = disk.path.display().to_string();
            let mounted = pair_problem(
                &Error::TargetMounted { target, mounts: disk.mounts.clone() },
                &source,
            );
            self.problems.push(if disk.system {
                format!("{} is the SYSTEM DISK of this computer. {mounted}", disk.name)
            } else {
                mounted
            });
        }
        match src {
            Some(s) => {
                self.judge(partition::decide_by_table(s, &ListedSize(disk.size)), shared, &source)
            }
            None => {
                if let Some(len) = self.source_len.filter(|len| disk.size < *len) {
                    self.notes.push(format!(
                        "The target is smaller by {}: whether the source's partitions fit is checked once access is authorized, before anything is written.",
                        human(len - disk.size)
                    ));
                }
            }
        }
    }
}

/// A listed disk Setup may not open, as the disk list knows it: its size,
/// all that deciding whether the source fits a target needs. Never read,
/// written or compared (it is not opened).
struct ListedSize(u64);

impl BlockDevice for ListedSize {
    fn len(&self) -> u64 {
        self.0
    }

    fn read_at(&self, _: &mut [u8], _: u64) -> std::io::Result<()> {
        Err(std::io::ErrorKind::PermissionDenied.into())
    }

    fn write_at(&self, _: &[u8], _: u64) -> std::io::Result<()> {
        Err(std::io::ErrorKind::PermissionDenied.into())
    }

    fn flush(&self) -> std::io::Result<()> {
        Err(std::io::ErrorKind::PermissionDenied.into())
    }

    fn id(&self) -> DeviceId {
        DeviceId::Memory(u64::MAX)
    }

    fn describe(&self) -> String {
        "a listed disk, not opened".into()
    }
}

/// A new target's folder that does not exist, as a problem (a stat: on the
/// engine, with the rest of the check).
fn missing_folder(target: &Path) -> Option<String> {
    let dir = target.parent().filter(|d| !d.as_os_str().is_empty())?;
    (!dir.is_dir()).then(|| format!("Target: the folder {} does not exist", dir.display()))
}

/// What only `livemirror clone` writes, as a problem: a new `.zst` image
/// out (`target_exists`: it is not new).
fn new_zst(source: &Path, target: &Path, target_exists: bool) -> Option<String> {
    let zst = target.extension().is_some_and(|e| e.eq_ignore_ascii_case("zst"));
    (zst && !target_exists).then(|| {
        format!(
            "A new .zst image is made by `livemirror clone {} {}`; the window makes raw images, and qcow2 when the name ends .qcow2.",
            source.display(),
            target.display()
        )
    })
}

/// How a disk in the target list compares with the source, by size alone
/// (the chosen pair's partitions are checked below the lists).
fn compared_size(target: u64, source: u64) -> String {
    match target.cmp(&source) {
        std::cmp::Ordering::Equal => "the source's size".into(),
        std::cmp::Ordering::Greater => format!("larger by {}", human(target - source)),
        std::cmp::Ordering::Less => format!("smaller by {}", human(source - target)),
    }
}

/// A disk this user may not open: Start asks udisks2 (and so polkit, which
/// may ask for a password); sizes are checked then.
fn authorization_note(path: &str) -> String {
    format!("You will be asked to authorize access to {path} when you press Start.")
}

fn file_name(p: &Path) -> String {
    p.file_name().map_or_else(|| p.display().to_string(), |n| n.to_string_lossy().into_owned())
}

fn target_open_problem(e: &Error) -> String {
    if let Error::Open { path, source } = e
        && matches!(
            source.kind(),
            std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem
        )
    {
        return format!(
            "The target {} is read-only ({source}): livemirror must be able to write it.",
            path.display()
        );
    }
    format!("Target: {e}")
}

fn pair_problem(e: &Error, source: &str) -> String {
    match e {
        Error::DoesNotFit { source_len, target_len, reason } => format!(
            "The target ({}) is smaller than the source ({}) and cannot take it: {reason}.",
            human(*target_len),
            human(*source_len)
        ),
        Error::SameDevice { .. } => format!(
            "The source and the target are the same ({source}): a disk or image cannot be mirrored into itself."
        ),
        Error::TargetMounted { target, mounts } => format!(
            "The target {target} is mounted at {}: unmount it first (livemirror never writes a disk in use).",
            mounts.join(", ")
        ),
        other => other.to_string(),
    }
}

/// What a check is of: the pair as typed, and whether the source is shared.
#[derive(Clone, PartialEq)]
struct Pair {
    source: String,
    target: String,
    shared: bool,
}

/// How long a typed pair stands unchanged before it is checked: typing a
/// path checks it once, not once per keystroke (a hanging device would
/// otherwise hold one engine thread per key).
const SETTLE: Duration = Duration::from_millis(250);

pub struct SetupScreen {
    pub source: String,
    pub target: String,
    pub options: MirrorOptions,
    pub share: ShareSettings,
    confirm: String,
    /// The check of the pair, on the engine: only the newest pair's counts.
    checks: Newest<Pair, Check>,
    /// Why the last Start failed.
    pub start_error: Option<String>,
    /// Grow the target's last partition after the copy (opt-in, each time).
    pub grow_last_partition: bool,
    speed: SpeedControl,
    /// A system file dialog returned nothing for this side (and whether it
    /// was for a new file): cancelled, or none could be shown.
    pub nothing_picked: Option<(Role, bool)>,
    /// Remembered settings that are not the defaults, in words, and the
    /// options and share as loaded (the line goes once either is changed).
    remembered: Vec<String>,
    loaded: (MirrorOptions, ShareSettings),
    /// The "Network disk (NBD)…" dialog, while open.
    nbd: Option<NbdEntry>,
}

impl SetupScreen {
    /// The screen with the remembered options and the given paths typed in.
    pub fn new(settings: &Settings, source: Option<PathBuf>, target: Option<PathBuf>) -> Self {
        let text = |p: Option<PathBuf>| p.map(|p| p.display().to_string()).unwrap_or_default();
        SetupScreen {
            source: text(source),
            target: text(target),
            options: settings.options.clone(),
            share: settings.share.clone(),
            confirm: String::new(),
            checks: Newest::new(SETTLE),
            start_error: None,
            grow_last_partition: false,
            speed: SpeedControl::new(settings.options.speed),
            nothing_picked: None,
            remembered: not_defaults(settings),
            loaded: (settings.options.clone(), settings.share.clone()),
            nbd: None,
        }
    }

    /// The settings back at their defaults (after "Reset to defaults").
    pub fn reset(&mut self, settings: &Settings) {
        self.options = settings.options.clone();
        self.share = settings.share.clone();
        self.speed = SpeedControl::new(settings.options.speed);
        self.remembered.clear();
    }

    /// "Remembered from last time: …" with a reset, while the remembered
    /// options are untouched: nothing is carried into a job unseen.
    fn remembered_ui(&mut self, ui: &mut egui::Ui, actions: &mut Vec<Action>) {
        let untouched = self.loaded == (self.options.clone(), self.share.clone());
        if self.remembered.is_empty() || !untouched {
            return;
        }
        ui.horizontal_wrapped(|ui| {
            ui.label(
                RichText::new(format!(
                    "Remembered from last time: {}.",
                    self.remembered.join(" · ")
                ))
                .color(theme::WARN),
            );
            if ui.button("Reset to defaults").clicked() {
                actions.push(Action::ResetSettings);
            }
        });
        ui.separator();
    }

    /// Fills a side from a file dialog or the disk list.
    pub fn set(&mut self, role: Role, path: &Path) {
        let text = path.display().to_string();
        match role {
            Role::Source => self.source = text,
            Role::Target => self.target = text,
        }
    }

    /// The pair as typed now.
    fn pair(&self) -> Pair {
        Pair {
            source: self.source.clone(),
            target: self.target.clone(),
            shared: self.share.enabled,
        }
    }

    /// The check of the pair as typed now: asked for when the pair
    /// changes, answered at once when that needs no I/O, else on the
    /// engine once the pair has settled and the disk list is there (a disk
    /// this user may not open is judged by it). `None` while it is not
    /// answered.
    fn check(
        &mut self,
        ctx: &egui::Context,
        engine: &Engine,
        opener: &Arc<dyn Opener>,
        disks: Option<&Arc<Vec<Disk>>>,
    ) -> Option<Check> {
        let pair = self.pair();
        let first = self.checks.last().is_none();
        if self.checks.ask(&pair) {
            if !first {
                // Said of the pair as it was: the changed pair gets its own check.
                self.start_error = None;
            }
            self.confirm.clear();
            if let Some(c) = Check::at_once(&pair.source, &pair.target) {
                self.checks.answer_now(c);
            }
        }
        if let Some(disks) = disks {
            let (opener, disks) = (opener.clone(), disks.clone());
            self.checks.poll(engine, ctx, move |p| {
                Check::of(&p.source, &p.target, p.shared, &*opener, &disks)
            });
        }
        self.answer().cloned()
    }

    /// The check of the pair as typed now, once it has answered. (Not
    /// [`Newest::answer`]: the action bar is drawn before the fields, so
    /// the text may have changed since the check was last asked for.)
    fn answer(&self) -> Option<&Check> {
        self.checks
            .last()
            .filter(|(p, _)| self.same_source(p) && p.target == self.target)
            .map(|(_, c)| c)
    }

    /// Whether `pair` has the source as typed now (shared or not as now).
    fn same_source(&self, pair: &Pair) -> bool {
        pair.source == self.source && pair.shared == self.share.enabled
    }

    /// Whether the pair as typed now is still being checked (Start waits
    /// for it).
    pub fn checking(&self) -> bool {
        self.answer().is_none()
    }

    /// The source's size for the target's disk list: from the check of
    /// this source, also while a changed target is being checked.
    fn source_len(&self) -> Option<u64> {
        self.checks.last().filter(|(p, _)| self.same_source(p)).and_then(|(_, c)| c.source_len)
    }

    /// The screen; `disks` is `None` while the disk list is being read.
    pub fn ui(
        &mut self,
        ui: &mut egui::Ui,
        engine: &Engine,
        opener: &Arc<dyn Opener>,
        disks: Option<&Arc<Vec<Disk>>>,
        actions: &mut Vec<Action>,
    ) {
        egui::ScrollArea::vertical().show(ui, |ui| {
            let check = self.check(ui.ctx(), engine, opener, disks);
            let listed = disks.map(|d| d.as_slice());
            let source_len = self.source_len();
            ui.columns(2, |cols| {
                self.side_ui(&mut cols[0], Role::Source, listed, None, actions);
                self.side_ui(&mut cols[1], Role::Target, listed, source_len, actions);
            });
            if let Some(entry) = &mut self.nbd {
                match entry.ui(ui.ctx()) {
                    Some(nbd_entry::Outcome::Use(uri)) => {
                        let role = entry.role;
                        self.set(role, Path::new(&uri));
                        self.nbd = None;
                    }
                    Some(nbd_entry::Outcome::Cancel) => self.nbd = None,
                    None => {}
                }
            }
            ui.separator();
            self.remembered_ui(ui, actions);
            options_ui(ui, &mut self.options, &mut self.speed);
            ui.separator();
            self.share.ui(ui);
            ui.separator();
            self.verdict_ui(ui, check.as_ref());
        });
    }

    fn side_ui(
        &mut self,
        ui: &mut egui::Ui,
        role: Role,
        disks: Option<&[Disk]>,
        source_len: Option<u64>,
        actions: &mut Vec<Action>,
    ) {
        let (title, what) = match role {
            Role::Source if self.share.enabled => {
                ("Source", "the disk or image to copy (written only through the share)")
            }
            Role::Source => ("Source", "the disk or image to copy (read only)"),
            Role::Target => ("Target", "where the copy goes (overwritten)"),
        };
        ui.heading(title);
        ui.label(RichText::new(what).weak());
        ui.add_space(4.0);
        let current = match role {
            Role::Source => self.source.clone(),
            Role::Target => self.target.clone(),
        };
        egui::Frame::group(ui.style()).show(ui, |ui| {
            ui.set_min_width(ui.available_width());
            let Some(disks) = disks else {
                ui.label(RichText::new("Listing disks…").weak());
                return;
            };
            if disks.is_empty() {
                ui.label(RichText::new("No disks found (or not allowed to list them).").weak());
            }
            for d in disks {
                let selected = Path::new(&current) == d.path;
                let mut text = RichText::new(match source_len {
                    Some(len) => format!("{}  — {}", d.summary(), compared_size(d.size, len)),
                    None => d.summary(),
                });
                if d.system {
                    text = text.color(theme::WARN);
                }
                let flags = d.flags();
                let r = ui.selectable_label(selected, text);
                let r = if flags.is_empty() { r } else { r.on_hover_text(flags.join("; ")) };
                if r.clicked() {
                    actions.push(Action::Choose(role, d.path.clone()));
                }
                if !flags.is_empty() {
                    ui.label(RichText::new(format!("    {}", flags.join(" · "))).small().weak());
                }
            }
        });
        ui.horizontal(|ui| {
            if ui.button("Image file…").clicked() {
                actions.push(Action::PickFile { role, new_file: false });
            }
            if role == Role::Target && ui.button("New image file…").clicked() {
                actions.push(Action::PickFile { role, new_file: true });
            }
            if ui.button("Network disk (NBD)…").clicked() {
                self.nbd = Some(NbdEntry::new(role));
            }
        });
        if let Some((r, new_file)) = self.nothing_picked
            && r == role
        {
            ui.horizontal_wrapped(|ui| {
                ui.label(RichText::new(NOTHING_PICKED).weak());
                if ui.button("Browse in this window…").clicked() {
                    actions.push(Action::Browse { role, new_file });
                }
            });
        }
        let label = ui.label(format!("{title} path"));
        let field = match role {
            Role::Source => &mut self.source,
            Role::Target => &mut self.target,
        };
        let hint = match role {
            Role::Source => "/dev/sdX or /path/to/disk.img",
            Role::Target => "/dev/sdY, an image, or a new file name",
        };
        ui.add(egui::TextEdit::singleline(field).hint_text(hint).desired_width(f32::INFINITY))
            .labelled_by(label.id);
    }

    /// What the check found; nothing while it is under way (the action bar
    /// says so), rather than what was found for a pair no longer typed.
    fn verdict_ui(&mut self, ui: &mut egui::Ui, check: Option<&Check>) {
        let Some(check) = check else { return };
        if !check.chosen {
            ui.label(if self.source.trim().is_empty() {
                "Choose a source."
            } else {
                "Choose a target: nothing is selected for you."
            });
        }
        for p in &check.problems {
            ui.label(RichText::new(p.as_str()).color(theme::BAD));
        }
        for n in &check.notes {
            ui.label(n);
        }
        let resizable = check.fit.as_ref().is_some_and(|f| f.relation() != Relation::Same);
        if resizable && !self.share.enabled {
            ui.checkbox(
                &mut self.grow_last_partition,
                "Grow the last partition to the end of the target",
            )
            .on_hover_text(
                "After the copy. An ext2/3/4 filesystem in it is grown too (with resize2fs); \
                 other filesystems must then be grown by the operating system.",
            );
        }
        if let Some(name) = &check.confirm_name {
            let label = ui.label(format!("Type {name} to confirm"));
            ui.add(egui::TextEdit::singleline(&mut self.confirm).hint_text(name.as_str()))
                .labelled_by(label.id);
        }
        if let Some(e) = &self.start_error {
            ui.label(RichText::new(format!("Could not start: {e}")).color(theme::BAD));
        }
    }

    /// The action bar's Start, usable once the check of the pair as typed
    /// has answered with no problem and a disk's name is typed.
    pub fn actions_ui(&mut self, ui: &mut egui::Ui, starting: bool, actions: &mut Vec<Action>) {
        let checking = self.checking();
        let check = self.answer().cloned().unwrap_or_default();
        let confirmed = check.confirm_name.as_ref().is_none_or(|name| self.confirm.trim() == name);
        let ok = check.chosen
            && check.problems.is_empty()
            && confirmed
            && self.share.endpoint().is_ok()
            && !starting;
        let start = ui.add_enabled(
            ok,
            egui::Button::new(RichText::new("Start").strong())
                .min_size(crate::gui::screens::running::BUTTON),
        );
        if start.clicked()
            && let Some(format) = check.flash
        {
            self.start_error = None;
            let (source, target) = (paths::resolve(&self.source), paths::resolve(&self.target));
            actions.push(Action::Flash(FlashRequest { source, target, format }));
        } else if start.clicked() {
            self.start_error = None;
            actions.push(Action::Start(StartRequest {
                source: paths::resolve(&self.source),
                target: paths::resolve(&self.target),
                options: self.options.clone(),
                share: self.share.clone(),
                grow_last_partition: self.grow_last_partition
                    && !self.share.enabled
                    && check.fit.as_ref().is_some_and(|f| f.relation() != Relation::Same),
            }));
        }
        // Both sides exist: they can be compared without copying anything.
        let comparable = check.chosen
            && check.problems.is_empty()
            && check.flash.is_none()
            && check.target_exists;
        if ui
            .add_enabled(
                comparable && !starting,
                egui::Button::new("Verify only").min_size(super::running::BUTTON),
            )
            .on_hover_text("Compares both sides byte for byte and shows where they differ")
            .clicked()
        {
            let (source, target) = (paths::resolve(&self.source), paths::resolve(&self.target));
            actions.push(Action::VerifyOnly { source, target });
        }
        if starting {
            ui.spinner();
            ui.label("Starting…");
        } else if checking {
            // No spinner: it would repaint without end while a device hangs.
            ui.label(RichText::new(CHECKING).weak());
        }
    }
}

/// Said beside Start while the pair is checked.
const CHECKING: &str = "Checking the source and the target…";

/// Said under the buttons when a system file dialog returned no file.
const NOTHING_PICKED: &str = "No file was chosen. If no dialog appeared, this desktop has no file \
     dialog service (xdg-desktop-portal-gtk or zenity would bring one):";

/// Granularities offered (QEMU's range is 512 B … 64 MiB).
const GRANULARITIES: [(u64, &str); 9] = [
    (512, "512 B"),
    (4 << 10, "4 KiB"),
    (16 << 10, "16 KiB"),
    (64 << 10, "64 KiB"),
    (256 << 10, "256 KiB"),
    (1 << 20, "1 MiB"),
    (4 << 20, "4 MiB"),
    (16 << 20, "16 MiB"),
    (64 << 20, "64 MiB"),
];

/// The "Copy" choices: value, name, what it does.
const SYNC_CHOICES: [(SyncMode, &str, &str); 4] = [
    (SyncMode::Full, "everything", "Every byte of the source."),
    (
        SyncMode::Top,
        "allocated data only",
        "Only what the source has allocated: holes of a sparse image are skipped.",
    ),
    (SyncMode::None, "new writes only", "Only what is written after the start."),
    (
        SyncMode::Differing,
        "update an earlier copy",
        "The target already holds an older copy of this source: only what differs is copied.",
    ),
];

/// The error policies, by the command line's words with what they mean.
const POLICY_CHOICES: [(ErrorPolicy, &str, &str); 4] = [
    (ErrorPolicy::Report, "report (fail)", "The job fails with the error."),
    (
        ErrorPolicy::Ignore,
        "ignore (retry later)",
        "The failed range is copied again later; the job goes on.",
    ),
    (ErrorPolicy::Stop, "stop (ask)", "The job pauses and asks you: Retry, Ignore or Stop."),
    (
        ErrorPolicy::Enospc,
        "enospc (ask when full)",
        "Pause and ask when the disk is full; fail on other errors.",
    ),
];

const MODE_CHOICES: [(CopyMode, &str, &str); 2] = [
    (
        CopyMode::Background,
        "background",
        "What is written during the copy is noted and copied again soon after.",
    ),
    (
        CopyMode::WriteBlocking,
        "write-blocking",
        "Each write also reaches the target before it completes: always converges, writes get slower.",
    ),
];

/// The name a choice table gives `value`.
fn name_of<T: PartialEq>(table: &[(T, &'static str, &str)], value: &T) -> &'static str {
    table.iter().find(|(v, _, _)| v == value).map_or("", |c| c.1)
}

fn options_ui(ui: &mut egui::Ui, o: &mut MirrorOptions, speed: &mut SpeedControl) {
    ui.heading("Options");
    egui::Grid::new("options").num_columns(2).spacing([12.0, 6.0]).show(ui, |ui| {
        choice(ui, "Copy", &mut o.sync, &SYNC_CHOICES);
        choice(
            ui,
            "Chunk size",
            &mut o.granularity,
            &std::iter::once((None, "automatic", "From the target's clusters, else 64 KiB."))
                .chain(GRANULARITIES.iter().map(|(g, name)| {
                    (
                        Some(*g),
                        *name,
                        "Smaller chunks track writes more finely but use more memory.",
                    )
                }))
                .collect::<Vec<_>>(),
        );
        let label = ui.label("Speed limit");
        ui.horizontal(|ui| {
            speed.ui(
                ui,
                label.id,
                &mut o.speed,
                "type any value; it can be changed while the job runs",
            );
        });
        ui.end_row();
        choice(ui, "On a source error", &mut o.on_source_error, &POLICY_CHOICES);
        choice(ui, "On a target error", &mut o.on_target_error, &POLICY_CHOICES);
        choice(ui, "Copy mode", &mut o.copy_mode, &MODE_CHOICES);
    });
}

/// What remembered settings change from the defaults, in the screen's words.
fn not_defaults(s: &Settings) -> Vec<String> {
    let (o, d) = (&s.options, &MirrorOptions::default());
    let mut out = Vec::new();
    if o.sync != d.sync {
        out.push(format!("copy: {}", name_of(&SYNC_CHOICES, &o.sync)));
    }
    if let Some(g) = o.granularity.filter(|_| o.granularity != d.granularity) {
        out.push(format!("chunk size: {}", human(g)));
    }
    if o.speed != d.speed {
        out.push(format!("speed limit: {}", text::speed_limit(o.speed)));
    }
    if o.on_source_error != d.on_source_error {
        out.push(format!("on a source error: {}", name_of(&POLICY_CHOICES, &o.on_source_error)));
    }
    if o.on_target_error != d.on_target_error {
        out.push(format!("on a target error: {}", name_of(&POLICY_CHOICES, &o.on_target_error)));
    }
    if o.copy_mode != d.copy_mode {
        out.push(format!("copy mode: {}", name_of(&MODE_CHOICES, &o.copy_mode)));
    }
    if o.buf_size != d.buf_size || o.verify != d.verify || o.freeze_limit_ms != d.freeze_limit_ms {
        out.push("advanced options from the settings file".into());
    }
    if s.share.enabled {
        out.push("sharing the source over NBD".into());
    }
    if !s.verify_when_done {
        out.push("no verification when a job ends".into());
    }
    out
}

/// A labelled combo box with the chosen option's explanation beside it.
fn choice<T: PartialEq + Copy>(
    ui: &mut egui::Ui,
    label: &str,
    value: &mut T,
    options: &[(T, &str, &str)],
) {
    let l = ui.label(label);
    ui.horizontal(|ui| {
        let current = options.iter().find(|(v, _, _)| v == value);
        egui::ComboBox::from_id_salt(label)
            .selected_text(current.map_or("", |c| c.1))
            .show_ui(ui, |ui| {
                for (v, name, _) in options {
                    ui.selectable_value(value, *v, *name);
                }
            })
            .response
            .labelled_by(l.id);
        if let Some((_, _, why)) = options.iter().find(|(v, _, _)| v == value) {
            ui.label(RichText::new(*why).weak());
        }
    });
    ui.end_row();
}
