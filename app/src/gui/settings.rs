//! What the window remembers between runs: the last mirror options, the
//! NBD share option, the window size and whether to verify when done. A JSON file in the platform's config directory
//! (`~/.config/livemirror/settings.json` on Linux); every field has a default
//! so an old or partial file still loads. Paths are deliberately *not*
//! remembered: a target must be chosen afresh every time.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use livemirror_core::job::MirrorOptions;
use serde::{Deserialize, Serialize};

use crate::gui::share_option::ShareSettings;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub options: MirrorOptions,
    pub share: ShareSettings,
    /// Inner size in points.
    pub window_size: [f32; 2],
    /// Verify each finished copy byte for byte (as flashing tools do);
    /// "Skip verification" turns it off.
    pub verify_when_done: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            options: MirrorOptions::default(),
            share: ShareSettings::default(),
            window_size: [1100.0, 760.0],
            verify_when_done: true,
        }
    }
}

impl Settings {
    /// Where the settings live, if the platform has a config directory.
    pub fn default_path() -> Option<PathBuf> {
        directories::ProjectDirs::from("", "", "livemirror")
            .map(|d| d.config_dir().join("settings.json"))
    }

    /// Loads `path`; a missing or unreadable file gives the defaults (a
    /// broken settings file must never keep the app from starting).
    pub fn load(path: &Path) -> Self {
        std::fs::read(path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
    }

    pub fn save(&self, path: &Path) -> io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let json = serde_json::to_vec_pretty(self).map_err(io::Error::other)?;
        std::fs::write(path, json)
    }
}

/// Writes the settings off the UI thread, newest last: every save is
/// numbered when asked for, and a write that finds a newer one already on
/// disk leaves it be, so saves that finish out of order never bring back
/// older settings.
#[derive(Debug, Default)]
pub struct Saver {
    /// The number of the last save asked for.
    asked: AtomicU64,
    /// The number of the save on disk (written under this lock).
    written: Mutex<u64>,
}

impl Saver {
    /// Numbers a new save; hand the number to [`Saver::write`].
    pub fn ask(&self) -> u64 {
        self.asked.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Writes save number `n` unless a newer one is already written.
    pub fn write(&self, n: u64, settings: &Settings, path: &Path) {
        let mut written = self.written.lock().unwrap_or_else(|e| e.into_inner());
        if *written > n {
            return;
        }
        if let Err(e) = settings.save(path) {
            tracing::warn!("cannot save settings to {}: {e}", path.display());
        }
        *written = n;
    }

    /// True when every save asked for is on disk (or was superseded).
    pub fn idle(&self) -> bool {
        let written = *self.written.lock().unwrap_or_else(|e| e.into_inner());
        written == self.asked.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use livemirror_core::job::ErrorPolicy;

    #[test]
    fn round_trips_and_fills_missing_fields() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/settings.json");
        assert_eq!(Settings::load(&path), Settings::default());
        let mut s = Settings::default();
        s.options.on_target_error = ErrorPolicy::Stop;
        s.window_size = [800.0, 600.0];
        s.share = ShareSettings { enabled: true, endpoint: "127.0.0.1:10809".into() };
        s.save(&path).unwrap();
        assert_eq!(Settings::load(&path), s);
        std::fs::write(&path, r#"{"window_size": [640, 480]}"#).unwrap();
        let partial = Settings::load(&path);
        assert_eq!(partial.window_size, [640.0, 480.0]);
        assert_eq!(partial.options, MirrorOptions::default());
        assert_eq!(partial.share, ShareSettings::default());
        std::fs::write(&path, "not json").unwrap();
        assert_eq!(Settings::load(&path), Settings::default());
    }

    #[test]
    fn an_older_save_finishing_last_does_not_bring_back_older_settings() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("settings.json");
        let saver = Saver::default();
        let (old, new) = (saver.ask(), saver.ask());
        let newer = Settings { window_size: [1000.0, 700.0], ..Default::default() };
        assert!(!saver.idle());
        saver.write(new, &newer, &path);
        saver.write(old, &Settings::default(), &path);
        assert_eq!(Settings::load(&path).window_size, [1000.0, 700.0]);
        assert!(saver.idle());
    }
}
