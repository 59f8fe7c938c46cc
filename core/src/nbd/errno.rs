//! The one place that turns an I/O error into an NBD error number.
//!
//! NBD defines its own small set of error values (which happen to equal the
//! common Linux errnos); anything outside that set must not go on the wire,
//! so every failure a client sees passes through [`Errno::from_io`].

use std::fmt;
use std::io;

use crate::nbd_proto::{
    NBD_EINVAL, NBD_EIO, NBD_ENOMEM, NBD_ENOSPC, NBD_EOVERFLOW, NBD_EPERM, NBD_ESHUTDOWN,
};

/// An error value allowed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Errno(u32);

impl Errno {
    pub const EPERM: Errno = Errno(NBD_EPERM);
    pub const EIO: Errno = Errno(NBD_EIO);
    pub const ENOMEM: Errno = Errno(NBD_ENOMEM);
    pub const EINVAL: Errno = Errno(NBD_EINVAL);
    pub const ENOSPC: Errno = Errno(NBD_ENOSPC);
    pub const EOVERFLOW: Errno = Errno(NBD_EOVERFLOW);
    pub const ESHUTDOWN: Errno = Errno(NBD_ESHUTDOWN);

    /// The value sent in a reply.
    pub fn code(self) -> u32 {
        self.0
    }

    /// Maps an error from a [`BlockDevice`](crate::device::BlockDevice).
    /// The protocol asks for `EDQUOT` and `EFBIG` to read as `ENOSPC`, and
    /// for read-only refusals to read as `EPERM`; the rest that has no NBD
    /// equivalent is an I/O error.
    pub fn from_io(e: &io::Error) -> Errno {
        // Unix errnos say more than their `ErrorKind`; Windows error codes
        // are another numbering, so there the kind is all we go by.
        #[cfg(unix)]
        if let Some(raw) = e.raw_os_error() {
            return match raw {
                libc::EPERM | libc::EACCES | libc::EROFS => Errno::EPERM,
                libc::ENOSPC | libc::EDQUOT | libc::EFBIG => Errno::ENOSPC,
                libc::EINVAL => Errno::EINVAL,
                libc::ENOMEM => Errno::ENOMEM,
                libc::EOVERFLOW => Errno::EOVERFLOW,
                libc::ESHUTDOWN => Errno::ESHUTDOWN,
                _ => Errno::EIO,
            };
        }
        match e.kind() {
            io::ErrorKind::InvalidInput => Errno::EINVAL,
            io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => Errno::EPERM,
            io::ErrorKind::StorageFull
            | io::ErrorKind::QuotaExceeded
            | io::ErrorKind::FileTooLarge => Errno::ENOSPC,
            io::ErrorKind::OutOfMemory => Errno::ENOMEM,
            _ => Errno::EIO,
        }
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match *self {
            Errno::EPERM => "EPERM",
            Errno::EIO => "EIO",
            Errno::ENOMEM => "ENOMEM",
            Errno::EINVAL => "EINVAL",
            Errno::ENOSPC => "ENOSPC",
            Errno::EOVERFLOW => "EOVERFLOW",
            Errno::ESHUTDOWN => "ESHUTDOWN",
            _ => "error",
        };
        write!(f, "{name} ({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn os_errors_map_to_the_protocols_set() {
        let os = |n| Errno::from_io(&io::Error::from_raw_os_error(n));
        assert_eq!(os(libc::EDQUOT), Errno::ENOSPC);
        assert_eq!(os(libc::EFBIG), Errno::ENOSPC);
        assert_eq!(os(libc::EROFS), Errno::EPERM);
        assert_eq!(os(libc::EINVAL), Errno::EINVAL);
        assert_eq!(os(libc::ENXIO), Errno::EIO);
        assert_eq!(os(libc::EOPNOTSUPP), Errno::EIO);
    }

    /// Windows codes go by their kind: `ERROR_DISK_FULL`,
    /// `ERROR_HANDLE_DISK_FULL`, `ERROR_ACCESS_DENIED`, `ERROR_INVALID_PARAMETER`.
    #[cfg(windows)]
    #[test]
    fn windows_errors_map_to_the_protocols_set() {
        use windows::Win32::Foundation::{
            ERROR_ACCESS_DENIED, ERROR_DISK_FULL, ERROR_HANDLE_DISK_FULL, ERROR_INVALID_PARAMETER,
            ERROR_IO_DEVICE, WIN32_ERROR,
        };
        let os = |n: WIN32_ERROR| Errno::from_io(&io::Error::from_raw_os_error(n.0 as i32));
        assert_eq!(os(ERROR_DISK_FULL), Errno::ENOSPC);
        assert_eq!(os(ERROR_HANDLE_DISK_FULL), Errno::ENOSPC);
        assert_eq!(os(ERROR_ACCESS_DENIED), Errno::EPERM);
        assert_eq!(os(ERROR_INVALID_PARAMETER), Errno::EINVAL);
        assert_eq!(os(ERROR_IO_DEVICE), Errno::EIO);
    }

    #[test]
    fn errors_without_an_os_code_map_by_kind() {
        let kind = |k| Errno::from_io(&io::Error::new(k, "x"));
        // check_range's "past the end" error carries no errno.
        assert_eq!(kind(io::ErrorKind::InvalidInput), Errno::EINVAL);
        assert_eq!(kind(io::ErrorKind::StorageFull), Errno::ENOSPC);
        assert_eq!(kind(io::ErrorKind::Other), Errno::EIO);
    }
}
