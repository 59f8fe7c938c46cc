//! udisks2 over the system D-Bus: resolve a device node to udisks2's block
//! object, then `Block.OpenDevice`, which checks polkit (prompting the user
//! through their desktop's agent if the policy says so) and returns an open
//! descriptor that livemirror wraps as a [`FileDevice`].
//!
//! zbus 5's blocking API: the same zbus major version eframe's accessibility
//! layer already builds, so this costs no second D-Bus stack.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;

use livemirror_core::device::FileDevice;
use zbus::blocking::{Connection, Proxy, proxy::Builder};
use zbus::proxy::{CacheProperties, MethodFlags};
use zbus::zvariant::{OwnedFd, OwnedObjectPath, Value};

use super::OpenError;

const SERVICE: &str = "org.freedesktop.UDisks2";
const MANAGER_PATH: &str = "/org/freedesktop/UDisks2/Manager";
const MANAGER: &str = "org.freedesktop.UDisks2.Manager";
const BLOCK: &str = "org.freedesktop.UDisks2.Block";

/// Asks udisks2 to open the block device at `path`, read-only unless
/// `write`; with `direct`, a second descriptor opened `O_DIRECT` too (the
/// `flags` option of OpenDevice), for what [`OpenOptions::direct`] gives a
/// device opened directly.
///
/// [`OpenOptions::direct`]: livemirror_core::device::OpenOptions::direct
pub fn open(path: &Path, write: bool, direct: bool) -> Result<FileDevice, OpenError> {
    let conn = Connection::system().map_err(|e| OpenError::NoHelper {
        path: path.to_owned(),
        cause: format!("no system D-Bus: {e}"),
    })?;
    let object = resolve(&conn, path)?;
    let block = proxy(&conn, object.as_str(), BLOCK).map_err(|e| classify(path, &e))?;
    let dev = FileDevice::from_file(open_device(&block, path, write, 0)?, path)
        .map_err(OpenError::Direct)?;
    if !direct {
        return Ok(dev);
    }
    // Authorized once: the second call does not ask again.
    Ok(dev.with_direct_handle(open_device(&block, path, write, libc::O_DIRECT)?))
}

/// One `Block.OpenDevice` call, with extra `open(2)` flags.
fn open_device(block: &Proxy<'_>, path: &Path, write: bool, flags: i32) -> Result<File, OpenError> {
    let mut options: HashMap<&str, Value> = HashMap::new();
    if flags != 0 {
        options.insert("flags", Value::from(flags));
    }
    let mode = if write { "rw" } else { "r" };
    // AllowInteractiveAuth: we are prepared to wait while polkit asks the user.
    let fd: Option<OwnedFd> = block
        .call_with_flags("OpenDevice", MethodFlags::AllowInteractiveAuth.into(), &(mode, options))
        .map_err(|e| classify(path, &e))?;
    let fd = fd.ok_or_else(|| OpenError::Helper {
        path: path.to_owned(),
        message: "OpenDevice returned no descriptor".into(),
    })?;
    Ok(File::from(std::os::fd::OwnedFd::from(fd)))
}

/// udisks2's object for a device node (any path to it: /dev/sdb,
/// /dev/disk/by-id/…, a symlink), through `Manager.ResolveDevice`.
fn resolve(conn: &Connection, path: &Path) -> Result<OwnedObjectPath, OpenError> {
    let manager = proxy(conn, MANAGER_PATH, MANAGER).map_err(|e| classify(path, &e))?;
    let node = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    let devspec: HashMap<&str, Value> =
        HashMap::from([("path", Value::from(node.to_string_lossy().into_owned()))]);
    let options: HashMap<&str, Value> = HashMap::new();
    let found: Vec<OwnedObjectPath> =
        manager.call("ResolveDevice", &(devspec, options)).map_err(|e| classify(path, &e))?;
    found.into_iter().next().ok_or_else(|| OpenError::Helper {
        path: path.to_owned(),
        message: format!("udisks2 does not know {}", node.display()),
    })
}

fn proxy<'a>(conn: &Connection, object: &'a str, interface: &'a str) -> zbus::Result<Proxy<'a>> {
    Builder::new(conn)
        .destination(SERVICE)?
        .path(object)?
        .interface(interface)?
        .cache_properties(CacheProperties::No)
        .build()
}

/// Turns a D-Bus failure into what the user needs to know.
fn classify(path: &Path, e: &zbus::Error) -> OpenError {
    let path = path.to_owned();
    let zbus::Error::MethodError(name, detail, _) = e else {
        return OpenError::NoHelper { path, cause: e.to_string() };
    };
    let message = detail.clone().unwrap_or_default();
    match error_kind(name.as_str()) {
        ErrorKind::Absent => OpenError::NoHelper { path, cause: format!("{name}: {message}") },
        ErrorKind::Refused => OpenError::NotAuthorized { path, dismissed: false },
        ErrorKind::Dismissed => OpenError::NotAuthorized { path, dismissed: true },
        ErrorKind::Other => OpenError::Helper { path, message: format!("{message} ({name})") },
    }
}

#[derive(Debug, PartialEq, Eq)]
enum ErrorKind {
    Absent,
    Refused,
    Dismissed,
    Other,
}

/// Sorts D-Bus error names: the bus's "nobody owns that name / cannot start
/// it" means udisks2 is absent; udisks2's NotAuthorized* mean polkit said no.
fn error_kind(name: &str) -> ErrorKind {
    match name {
        "org.freedesktop.UDisks2.Error.NotAuthorizedDismissed" => ErrorKind::Dismissed,
        "org.freedesktop.UDisks2.Error.NotAuthorized"
        | "org.freedesktop.UDisks2.Error.NotAuthorizedCanObtain"
        | "org.freedesktop.DBus.Error.AccessDenied" => ErrorKind::Refused,
        "org.freedesktop.DBus.Error.ServiceUnknown"
        | "org.freedesktop.DBus.Error.NameHasNoOwner" => ErrorKind::Absent,
        n if n.starts_with("org.freedesktop.DBus.Error.Spawn.") => ErrorKind::Absent,
        _ => ErrorKind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dbus_error_names_sort_into_absent_refused_dismissed() {
        use ErrorKind::*;
        for (name, kind) in [
            ("org.freedesktop.DBus.Error.ServiceUnknown", Absent),
            ("org.freedesktop.DBus.Error.Spawn.ChildExited", Absent),
            ("org.freedesktop.UDisks2.Error.NotAuthorizedCanObtain", Refused),
            ("org.freedesktop.UDisks2.Error.NotAuthorized", Refused),
            ("org.freedesktop.UDisks2.Error.NotAuthorizedDismissed", Dismissed),
            ("org.freedesktop.UDisks2.Error.Failed", Other),
        ] {
            assert_eq!(error_kind(name), kind, "{name}");
        }
    }
}
