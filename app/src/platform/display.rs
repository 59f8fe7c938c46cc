//! Whether a window can be shown, and (on Windows) letting go of the
//! console a window app was started with.

/// True when a window can be shown: an X11 or Wayland display is set (on
/// Windows and macOS there always is one).
pub fn available() -> bool {
    if cfg!(any(windows, target_os = "macos")) {
        return true;
    }
    ["DISPLAY", "WAYLAND_DISPLAY"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()))
}

/// Started from Explorer or the Start menu, Windows gives a console
/// program a console window of its own; the window app lets go of it so it
/// closes. Started from a terminal, the console is shared and stays.
/// Elsewhere there is nothing to do.
pub fn release_console() {
    #[cfg(windows)]
    {
        use windows::Win32::System::Console::{FreeConsole, GetConsoleProcessList};
        let mut attached = [0u32; 2];
        // SAFETY: a writable buffer of the length the call is given.
        if unsafe { GetConsoleProcessList(&mut attached) } == 1 {
            // SAFETY: no handle of ours refers to the console afterwards: the
            // window app writes nothing to stdout or stderr.
            if let Err(e) = unsafe { FreeConsole() } {
                tracing::debug!("the console stays: {e}");
            }
        }
    }
}
