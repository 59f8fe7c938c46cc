//! Where the control socket lives: a unix socket (`unix:PATH`), whose file
//! permissions say who may drive the job; on Windows a named pipe
//! (`pipe:NAME`, that is `\\.\pipe\NAME`), whose default security allows
//! the same user and administrators.

use std::io;
use std::path::{Path, PathBuf};

use tokio::io::{AsyncRead, AsyncWrite};

/// A client connection.
pub trait Stream: AsyncRead + AsyncWrite + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + 'static> Stream for T {}

#[cfg(unix)]
pub use unix::{Listener, bind, parse_addr};
#[cfg(windows)]
pub use windows::{Listener, bind, parse_addr};

#[cfg(unix)]
mod unix {
    use super::*;
    use tokio::net::{UnixListener, UnixStream};

    /// Parses `unix:PATH`.
    pub fn parse_addr(s: &str) -> Result<PathBuf, String> {
        match s.strip_prefix("unix:") {
            Some(p) if !p.is_empty() => Ok(p.into()),
            _ => Err(format!("{s:?}: the control socket is given as unix:PATH")),
        }
    }

    /// Binds the socket, replacing a stale one from a crashed run, never
    /// anything else.
    pub fn bind(path: &Path) -> io::Result<Listener> {
        use std::os::unix::fs::FileTypeExt;
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            if !meta.file_type().is_socket() {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{} exists and is not a socket", path.display()),
                ));
            }
            std::fs::remove_file(path)?;
        }
        UnixListener::bind(path).map(Listener)
    }

    pub struct Listener(UnixListener);

    impl Listener {
        pub async fn accept(&mut self) -> io::Result<UnixStream> {
            Ok(self.0.accept().await?.0)
        }
    }
}

#[cfg(windows)]
mod windows {
    use super::*;
    use tokio::net::windows::named_pipe::{NamedPipeServer, ServerOptions};

    /// Parses `pipe:NAME` into `\\.\pipe\NAME`.
    pub fn parse_addr(s: &str) -> Result<PathBuf, String> {
        match s.strip_prefix("pipe:") {
            Some(p) if !p.is_empty() && !p.contains('\\') => Ok(format!(r"\\.\pipe\{p}").into()),
            _ => Err(format!("{s:?}: the control socket is given as pipe:NAME")),
        }
    }

    /// Creates the pipe; fails if another process already serves that name.
    pub fn bind(path: &Path) -> io::Result<Listener> {
        let next = ServerOptions::new().first_pipe_instance(true).create(path)?;
        Ok(Listener { name: path.to_owned(), next })
    }

    /// A pipe instance waiting for its client; each accepted client takes
    /// it, and a fresh instance waits for the next.
    pub struct Listener {
        name: PathBuf,
        next: NamedPipeServer,
    }

    impl Listener {
        pub async fn accept(&mut self) -> io::Result<NamedPipeServer> {
            self.next.connect().await?;
            let fresh = ServerOptions::new().create(&self.name)?;
            Ok(std::mem::replace(&mut self.next, fresh))
        }
    }
}
