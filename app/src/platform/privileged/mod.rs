//! Opening disks this user may not open, without running livemirror as root.
//!
//! A desktop app that must run as root breaks Wayland sessions and is
//! refused by security teams; GNOME Disks shows the better way: stay
//! unprivileged and ask udisks2 (which asks polkit, which may ask the user)
//! for an open descriptor of the one device needed. [`open`] does that on
//! Linux when a block device cannot be opened for lack of permission, and
//! explains `pkexec livemirror …` where udisks2 is not running. Image files
//! never need it: a file the user cannot open is reported as is.
//!
//! [`open`] is also where a path that is an NBD URI (`nbd://…`,
//! `nbd+unix://…`) becomes an NBD client instead of a file, and an image
//! file in qcow2 (by its content) a qcow2 image: every caller (clone,
//! serve, verify, the window) opens through here.

#[cfg(target_os = "linux")]
pub mod kernel_helper;
#[cfg(target_os = "linux")]
mod udisks;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use livemirror_core::device::{
    BlockDevice, ImageFormat, NbdDevice, NbdError, NbdUri, OpenOptions, Qcow2Device,
};

/// Why a device could not be opened.
#[derive(Debug)]
// Only Linux has a helper to ask; elsewhere only `Direct` is built.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub enum OpenError {
    /// Opening it directly failed, and no helper could change that.
    Direct(livemirror_core::Error),
    /// Permission denied, and udisks2 is not there to ask (not installed,
    /// not running, or no system bus).
    NoHelper { path: PathBuf, cause: String },
    /// udisks2 (polkit) said no, or the user dismissed the password prompt.
    NotAuthorized { path: PathBuf, dismissed: bool },
    /// udisks2 was asked and failed for another reason.
    Helper { path: PathBuf, message: String },
    /// The path is an NBD URI, and the export could not be opened.
    Nbd(NbdError),
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const AS_ROOT: &str = "or run livemirror as administrator: pkexec livemirror … (or sudo)";
        match self {
            OpenError::Direct(e) => write!(f, "{e}"),
            OpenError::NoHelper { path, cause } => write!(
                f,
                "cannot open {}: permission denied, and udisks2 is not available to open it \
                 for you ({cause}); install and start udisks2, {AS_ROOT}",
                path.display()
            ),
            OpenError::NotAuthorized { path, dismissed: true } => write!(
                f,
                "cannot open {}: the authorization prompt was dismissed, nothing was opened",
                path.display()
            ),
            OpenError::NotAuthorized { path, dismissed: false } => write!(
                f,
                "cannot open {}: not authorized (polkit refused udisks2's open-device action); \
                 ask your administrator, {AS_ROOT}",
                path.display()
            ),
            OpenError::Helper { path, message } => {
                write!(f, "cannot open {} through udisks2: {message}", path.display())
            }
            OpenError::Nbd(e) => write!(f, "{e}"),
        }
    }
}

/// Opens a disk, an image or an NBD export with `opts`. A block device that
/// the kernel refuses with "permission denied" is asked of udisks2 instead
/// (Linux; this may show a polkit password prompt and blocks until it is
/// answered). An NBD URI connects (only `opts.writes()` applies to it). An
/// image file is opened in the format its content says.
pub fn open(path: &Path, opts: OpenOptions) -> Result<Arc<dyn BlockDevice>, OpenError> {
    open_as(path, opts, None)
}

/// [`open`], reading an image file as `format` when given instead of the
/// format its content says (a raw disk image that happens to start with a
/// qcow2 header is read raw only when asked so). A qcow2 image takes only
/// `opts.writes()`: imago does its own I/O.
pub fn open_as(
    path: &Path,
    opts: OpenOptions,
    format: Option<ImageFormat>,
) -> Result<Arc<dyn BlockDevice>, OpenError> {
    if let Some(uri) = nbd_uri(path) {
        if format == Some(ImageFormat::Qcow2) {
            return Err(OpenError::Direct(livemirror_core::Error::Open {
                path: path.to_owned(),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "an NBD export is a disk, not a qcow2 file (serve it raw: qemu-nbd -f qcow2)",
                ),
            }));
        }
        return Ok(Arc::new(NbdDevice::open_uri(uri, opts.writes()).map_err(OpenError::Nbd)?));
    }
    if format.unwrap_or_else(|| ImageFormat::of_file(path)) == ImageFormat::Qcow2 {
        return Ok(Arc::new(Qcow2Device::open(path, opts.writes()).map_err(OpenError::Direct)?));
    }
    match opts.open(path) {
        Ok(dev) => Ok(Arc::new(dev)),
        #[cfg(target_os = "linux")]
        Err(e) if needs_helper(&e, path) => {
            Ok(Arc::new(udisks::open(path, opts.writes(), opts.is_direct())?))
        }
        Err(e) => Err(OpenError::Direct(e)),
    }
}

/// The URI, when `path` is written as an NBD URI: such a target exists
/// (or not) on its server, and is never created as a file.
pub fn nbd_uri(path: &Path) -> Option<&str> {
    path.to_str().filter(|s| NbdUri::looks_like(s))
}

/// True when the error is EACCES/EPERM on a block device: the case a
/// privileged helper can fix (it cannot help with a missing file, a busy
/// disk or an unreadable image). Also tells the window's inline check that such a device is not a
/// problem: authorization is asked for when the job starts.
pub fn needs_helper(e: &livemirror_core::Error, path: &Path) -> bool {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::FileTypeExt;
        let livemirror_core::Error::Open { source, .. } = e else {
            return false;
        };
        source.kind() == std::io::ErrorKind::PermissionDenied
            && std::fs::metadata(path).is_ok_and(|m| m.file_type().is_block_device())
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (e, path);
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only "permission denied" on a block device goes to udisks2: not the
    /// same error on an image file, not another error on a disk.
    #[cfg(target_os = "linux")]
    #[test]
    fn only_permission_denied_on_a_block_device_asks_the_helper() {
        use std::io::{Error as IoError, ErrorKind};
        use std::os::unix::fs::FileTypeExt;
        let err = |path: &Path, kind| livemirror_core::Error::Open {
            path: path.to_owned(),
            source: IoError::from(kind),
        };
        let image = tempfile::NamedTempFile::new().unwrap();
        assert!(!needs_helper(&err(image.path(), ErrorKind::PermissionDenied), image.path()));
        let disk = std::fs::read_dir("/dev")
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| std::fs::metadata(p).is_ok_and(|m| m.file_type().is_block_device()));
        let Some(disk) = disk else {
            eprintln!("no block device in /dev: only the image case was checked");
            return;
        };
        assert!(needs_helper(&err(&disk, ErrorKind::PermissionDenied), &disk), "{disk:?}");
        assert!(!needs_helper(&err(&disk, ErrorKind::NotFound), &disk), "{disk:?}");
    }

    #[test]
    fn a_missing_image_is_reported_as_is_without_asking_a_helper() {
        let missing = Path::new("/nonexistent/livemirror/disk.img");
        let Err(err) = open(missing, OpenOptions::new()) else { panic!("opened a missing file") };
        assert!(matches!(err, OpenError::Direct(_)), "{err:?}");
        assert!(err.to_string().contains("/nonexistent/livemirror/disk.img"), "{err}");
    }

    #[test]
    fn refusals_say_what_happened_and_what_to_do() {
        let path = PathBuf::from("/dev/sdz");
        let absent = OpenError::NoHelper { path: path.clone(), cause: "no system bus".into() };
        let text = absent.to_string();
        assert!(text.contains("/dev/sdz") && text.contains("udisks2") && text.contains("pkexec"));
        let refused = OpenError::NotAuthorized { path: path.clone(), dismissed: false };
        assert!(refused.to_string().contains("not authorized"));
        assert!(refused.to_string().contains("pkexec livemirror"));
        let dismissed = OpenError::NotAuthorized { path, dismissed: true };
        assert!(dismissed.to_string().contains("dismissed"));
    }
}
