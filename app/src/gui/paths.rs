//! Paths as the user typed them, made into the paths that will be opened:
//! `~/disk.img` and `disk.img` become `/home/me/disk.img` and
//! `/where/the/app/started/disk.img`, so Setup and the Running screen show
//! what will really be read or overwritten, not what was typed.

use std::path::{Path, PathBuf};

/// The absolute path a typed one stands for; NBD URIs and empty text stay
/// as they are.
pub fn resolve(typed: &str) -> PathBuf {
    let typed = typed.trim();
    if typed.is_empty() || crate::platform::privileged::nbd_uri(Path::new(typed)).is_some() {
        return PathBuf::from(typed);
    }
    let home = || directories::BaseDirs::new().map(|d| d.home_dir().to_path_buf());
    let expanded = match typed.strip_prefix('~') {
        Some("") => home(),
        Some(rest) if rest.starts_with(['/', std::path::MAIN_SEPARATOR]) => {
            home().map(|h| h.join(&rest[1..]))
        }
        _ => None,
    }
    .unwrap_or_else(|| PathBuf::from(typed));
    std::path::absolute(&expanded).unwrap_or(expanded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn home_and_relative_paths_become_absolute() {
        let home = directories::BaseDirs::new().unwrap().home_dir().to_path_buf();
        assert_eq!(resolve("~/disk.img"), home.join("disk.img"));
        assert_eq!(resolve("~"), home);
        let here = std::env::current_dir().unwrap();
        assert_eq!(resolve(" copy.img "), here.join("copy.img"));
        assert_eq!(resolve("/dev/sda"), PathBuf::from("/dev/sda"));
        assert_eq!(resolve("~other/x"), here.join("~other/x"));
        assert_eq!(resolve("nbd://127.0.0.1:10809"), PathBuf::from("nbd://127.0.0.1:10809"));
        assert_eq!(resolve(""), PathBuf::new());
    }
}
