//! What the window remembers between runs: the last mirror options, the
//! NBD share option, the window size and whether to verify when done. A JSON file in the platform's config directory
//! (`~/.config/livemirror/settings.json` on Linux); every field has a default
//! so an old or partial file still loads. Paths are deliberately *not*
//! remembered: a target must be chosen afresh every time.

use std::io;
use std::path::{Path, PathBuf};

use livemirror_core::job::MirrorOptions;
use serde::{Deserialize, Serialize};

use crate::gui::widgets::share::ShareSettings;

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
}
