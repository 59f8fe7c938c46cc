//! Where the server listens: a unix socket, or TCP on loopback (the only
//! choice on Windows, whose NBD clients do not speak `AF_UNIX`).
//!
//! NBD has no authentication and, without TLS (which we do not offer), no
//! encryption: whoever can connect can read and overwrite the disk. So a
//! TCP endpoint must resolve to loopback unless the caller explicitly
//! allows other addresses, and then [`Listener::warning`] says what that
//! means, for the caller to show.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::str::FromStr;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
#[cfg(unix)]
use tokio::net::UnixListener;

/// A byte stream a client connected on.
pub(super) trait Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Stream for T {}

/// An address to serve on: `unix:PATH` or `HOST:PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Unix(PathBuf),
    Tcp(String),
}

/// Why a string is not an [`Endpoint`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    #[error("unix: needs a socket path (unix:/run/disk.sock)")]
    NoSocketPath,
    #[error("{0:?} is not unix:PATH or HOST:PORT (for example 127.0.0.1:10809)")]
    NotAnAddress(String),
}

impl FromStr for Endpoint {
    type Err = EndpointError;

    fn from_str(s: &str) -> Result<Self, EndpointError> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(EndpointError::NoSocketPath);
            }
            return Ok(Endpoint::Unix(path.into()));
        }
        match s.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                Ok(Endpoint::Tcp(s.to_owned()))
            }
            _ => Err(EndpointError::NotAnAddress(s.to_owned())),
        }
    }
}

impl Endpoint {
    /// The NBD URI clients connect with (qemu, nbdcopy, nbdinfo):
    /// `nbd+unix:///?socket=PATH` or `nbd://HOST:PORT`.
    pub fn uri(&self) -> String {
        match self {
            Endpoint::Unix(p) => {
                format!("nbd+unix:///?socket={}", percent_encode(&p.to_string_lossy()))
            }
            Endpoint::Tcp(a) => format!("nbd://{a}"),
        }
    }
}

/// Escapes what a URI query value cannot hold as is (RFC 3986), so a
/// socket path with spaces or `&` still names the same file.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Unix(p) => write!(f, "unix:{}", p.display()),
            Endpoint::Tcp(a) => f.write_str(a),
        }
    }
}

/// A bound listening socket. A unix socket file is removed on drop.
pub struct Listener {
    inner: Inner,
    warning: Option<String>,
}

enum Inner {
    #[cfg(unix)]
    Unix {
        listener: UnixListener,
        path: PathBuf,
    },
    Tcp(TcpListener),
}

impl Listener {
    /// Binds `endpoint`. TCP addresses other than loopback are refused
    /// unless `allow_remote`. A stale unix socket (nobody listening) is
    /// replaced; any other existing file is left alone and reported.
    pub async fn bind(endpoint: &Endpoint, allow_remote: bool) -> io::Result<Listener> {
        match endpoint {
            #[cfg(unix)]
            Endpoint::Unix(path) => {
                remove_stale_socket(path)?;
                let listener = UnixListener::bind(path)?;
                Ok(Listener { inner: Inner::Unix { listener, path: path.clone() }, warning: None })
            }
            #[cfg(not(unix))]
            Endpoint::Unix(path) => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!(
                    "cannot serve on unix:{}: this system has no unix sockets; \
                     use a loopback address such as 127.0.0.1:10809",
                    path.display()
                ),
            )),
            Endpoint::Tcp(addr) => {
                let addrs: Vec<_> = tokio::net::lookup_host(addr.as_str()).await?.collect();
                let first = *addrs.first().ok_or_else(|| {
                    io::Error::new(io::ErrorKind::NotFound, format!("{addr} resolves to nothing"))
                })?;
                let remote = !first.ip().is_loopback();
                if remote && !allow_remote {
                    return Err(io::Error::new(
                        io::ErrorKind::PermissionDenied,
                        format!(
                            "refusing to serve NBD on {first}, which is not a loopback address: \
                             NBD has no authentication, so anyone who can reach it could read \
                             and overwrite the disk; allow remote addresses explicitly to do it anyway"
                        ),
                    ));
                }
                let listener = TcpListener::bind(first).await?;
                let warning = remote.then(|| {
                    format!(
                        "warning: serving NBD on {first}, which is not loopback; NBD has no \
                         authentication or encryption: anyone who can reach this address can \
                         read and overwrite the disk"
                    )
                });
                Ok(Listener { inner: Inner::Tcp(listener), warning })
            }
        }
    }

    /// Where clients connect (with the real port if port 0 was asked).
    pub fn endpoint(&self) -> io::Result<Endpoint> {
        match &self.inner {
            #[cfg(unix)]
            Inner::Unix { path, .. } => Ok(Endpoint::Unix(path.clone())),
            Inner::Tcp(l) => Ok(Endpoint::Tcp(l.local_addr()?.to_string())),
        }
    }

    /// What the caller must tell the user about this endpoint, if anything.
    pub fn warning(&self) -> Option<&str> {
        self.warning.as_deref()
    }

    /// The next client's stream, and who it is for the logs (its address;
    /// `unix` for a unix socket's, which have none worth naming).
    pub(super) async fn accept(&self) -> io::Result<(Box<dyn Stream>, String)> {
        match &self.inner {
            #[cfg(unix)]
            Inner::Unix { listener, .. } => {
                Ok((Box::new(listener.accept().await?.0), "unix".into()))
            }
            Inner::Tcp(l) => {
                let (s, peer) = l.accept().await?;
                // The protocol recommends it: replies are small and prompt.
                s.set_nodelay(true)?;
                Ok((Box::new(s), peer.to_string()))
            }
        }
    }
}

#[cfg(unix)]
impl Drop for Listener {
    fn drop(&mut self) {
        if let Inner::Unix { path, .. } = &self.inner
            && let Err(e) = std::fs::remove_file(path)
        {
            // Harmless (the next bind removes a stale socket), but odd.
            tracing::warn!(socket = %path.display(), error = %e, "cannot remove the NBD socket");
        }
    }
}

#[cfg(unix)]
fn remove_stale_socket(path: &std::path::Path) -> io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    let in_use =
        || io::Error::new(io::ErrorKind::AddrInUse, format!("{} already exists", path.display()));
    if !meta.file_type().is_socket() {
        return Err(in_use());
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(in_use()),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => std::fs::remove_file(path),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse() {
        assert_eq!("unix:/tmp/x.sock".parse(), Ok(Endpoint::Unix("/tmp/x.sock".into())));
        assert_eq!("127.0.0.1:10809".parse(), Ok(Endpoint::Tcp("127.0.0.1:10809".into())));
        assert_eq!("[::1]:0".parse(), Ok(Endpoint::Tcp("[::1]:0".into())));
        for bad in ["unix:", "10809", "host:", ":10809", "host:99999"] {
            assert!(bad.parse::<Endpoint>().is_err(), "{bad}");
        }
    }

    #[test]
    fn uris_are_what_qemu_and_libnbd_take() {
        let uri = |s: &str| s.parse::<Endpoint>().unwrap().uri();
        assert_eq!(
            uri("unix:/run/user/1000/lm.sock"),
            "nbd+unix:///?socket=/run/user/1000/lm.sock"
        );
        assert_eq!(uri("unix:/tmp/a b&c.sock"), "nbd+unix:///?socket=/tmp/a%20b%26c.sock");
        assert_eq!(uri("127.0.0.1:10809"), "nbd://127.0.0.1:10809");
        assert_eq!(uri("[::1]:10809"), "nbd://[::1]:10809");
    }

    #[tokio::test]
    async fn tcp_binds_loopback_and_refuses_the_rest_unless_allowed() {
        let l = Listener::bind(&"127.0.0.1:0".parse().unwrap(), false).await.unwrap();
        assert!(l.warning().is_none());
        assert!(l.endpoint().unwrap().to_string().starts_with("127.0.0.1:"));
        let e = Listener::bind(&"0.0.0.0:0".parse().unwrap(), false).await.err().expect("refused");
        assert!(e.to_string().contains("no authentication"), "{e}");
        let l = Listener::bind(&"0.0.0.0:0".parse().unwrap(), true).await.unwrap();
        assert!(l.warning().unwrap().contains("no authentication"));
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn unix_sockets_replace_stale_ones_but_not_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let ep = Endpoint::Unix(path.clone());
        // A socket file left behind by a dead server.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let l = Listener::bind(&ep, false).await.unwrap();
        // A live one is not stolen.
        assert!(Listener::bind(&ep, false).await.is_err());
        drop(l);
        assert!(!path.exists(), "removed on drop");
        std::fs::write(&path, b"precious").unwrap();
        assert!(Listener::bind(&ep, false).await.is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"precious");
    }
}
