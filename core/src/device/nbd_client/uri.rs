//! NBD URIs as qemu and libnbd write them, parsed in this one place.
//!
//! * `nbd://HOST[:PORT][/EXPORT]` — TCP, port 10809 unless given; `HOST`
//!   may be a name, an IPv4 address or a bracketed IPv6 address.
//! * `nbd+unix:///[EXPORT]?socket=PATH` — a unix socket; the authority
//!   must be empty.
//!
//! The export name is everything after the first `/` of the path,
//! percent-decoded (so `nbd://h/a%20b` names `a b`, as libnbd reads it).
//! `nbds://` and `nbds+unix://` (TLS) are recognised and refused with a
//! clear message: this client does not speak TLS.

use std::fmt;
use std::path::PathBuf;

use super::NbdError;

/// The port NBD servers listen on unless told otherwise (IANA).
pub const DEFAULT_PORT: u16 = 10809;

/// Where an export lives.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Address {
    Tcp { host: String, port: u16 },
    Unix(PathBuf),
}

/// A parsed NBD URI: where to connect and which export to ask for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NbdUri {
    pub address: Address,
    pub export: String,
}

impl NbdUri {
    /// True when `s` is written as an NBD URI (of any scheme we know, TLS
    /// included): such a string is never a file path, and a malformed one
    /// is reported by [`NbdUri::parse`] rather than opened as a file.
    pub fn looks_like(s: &str) -> bool {
        ["nbd://", "nbd+unix://", "nbds://", "nbds+unix://"].iter().any(|p| s.starts_with(p))
    }

    /// Parses `s`; see the module documentation for the forms.
    pub fn parse(s: &str) -> Result<NbdUri, NbdError> {
        let bad = |why: &str| NbdError::Uri { uri: s.to_owned(), why: why.to_owned() };
        let (scheme, rest) = s.split_once("://").ok_or_else(|| bad("no scheme"))?;
        let unix = match scheme {
            "nbd" => false,
            "nbd+unix" => true,
            "nbds" | "nbds+unix" => return Err(NbdError::TlsUnsupported { uri: s.to_owned() }),
            _ => return Err(bad("the scheme must be nbd or nbd+unix")),
        };
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q)),
            None => (rest, None),
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, ""),
        };
        let export = percent_decode(path).ok_or_else(|| bad("bad %-escape in the export name"))?;
        let mut socket = None;
        for pair in query.into_iter().flat_map(|q| q.split('&')).filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("socket", v)) if unix => {
                    let v = percent_decode(v).ok_or_else(|| bad("bad %-escape in socket"))?;
                    socket = Some(PathBuf::from(v));
                }
                _ => return Err(bad(&format!("unsupported query parameter {pair:?}"))),
            }
        }
        let address = if unix {
            if !authority.is_empty() {
                return Err(bad("nbd+unix:// takes no host: write nbd+unix:///EXPORT?socket=PATH"));
            }
            Address::Unix(socket.ok_or_else(|| bad("nbd+unix:// needs ?socket=PATH"))?)
        } else {
            let (host, port) = split_host_port(authority).ok_or_else(|| bad("bad host or port"))?;
            if host.is_empty() {
                return Err(bad("nbd:// needs a host"));
            }
            Address::Tcp { host, port }
        };
        Ok(NbdUri { address, export })
    }
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`.
fn split_host_port(authority: &str) -> Option<(String, u16)> {
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        (host, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port = match port {
        Some(p) => p.parse().ok()?,
        None => DEFAULT_PORT,
    };
    Some((host.to_owned(), port))
}

/// `%XX` escapes decoded; `None` for a broken escape or non-UTF-8 result.
fn percent_decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hex = [bytes.next()?, bytes.next()?];
            out.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).ok()
}

impl fmt::Display for NbdUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.address {
            Address::Tcp { host, port } if host.contains(':') => {
                write!(f, "nbd://[{host}]:{port}/{}", self.export)
            }
            Address::Tcp { host, port } => write!(f, "nbd://{host}:{port}/{}", self.export),
            Address::Unix(path) => {
                write!(f, "nbd+unix:///{}?socket={}", self.export, path.display())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(host: &str, port: u16, export: &str) -> NbdUri {
        NbdUri { address: Address::Tcp { host: host.into(), port }, export: export.into() }
    }

    #[test]
    fn tcp_forms_as_qemu_writes_them() {
        assert_eq!(NbdUri::parse("nbd://example.org").unwrap(), tcp("example.org", 10809, ""));
        assert_eq!(NbdUri::parse("nbd://h:1234/disk").unwrap(), tcp("h", 1234, "disk"));
        assert_eq!(NbdUri::parse("nbd://h/a%20b/c").unwrap(), tcp("h", 10809, "a b/c"));
        assert_eq!(NbdUri::parse("nbd://[::1]:99/x").unwrap(), tcp("::1", 99, "x"));
        assert_eq!(NbdUri::parse("nbd://[::1]/").unwrap(), tcp("::1", 10809, ""));
    }

    #[test]
    fn unix_forms_as_libnbd_writes_them() {
        let u = NbdUri::parse("nbd+unix:///?socket=/run/a.sock").unwrap();
        assert_eq!(u.address, Address::Unix("/run/a.sock".into()));
        assert_eq!(u.export, "");
        let u = NbdUri::parse("nbd+unix:///disk?socket=/tmp/x%20y").unwrap();
        assert_eq!((u.address, u.export), (Address::Unix("/tmp/x y".into()), "disk".into()));
    }

    #[test]
    fn display_parses_back_to_the_same_uri() {
        for s in ["nbd://h:1/e", "nbd://[::1]:2/", "nbd+unix:///d?socket=/s"] {
            let u = NbdUri::parse(s).unwrap();
            assert_eq!(NbdUri::parse(&u.to_string()).unwrap(), u, "{s}");
        }
    }

    #[test]
    fn malformed_uris_say_what_is_wrong() {
        for (s, why) in [
            ("nbd+unix:///x", "needs ?socket"),
            ("nbd+unix://host/x?socket=/s", "takes no host"),
            ("nbd://", "needs a host"),
            ("nbd://h:port/x", "bad host or port"),
            ("nbd://h/x?socket=/s", "unsupported query"),
            ("nbd://h/%zz", "%-escape"),
        ] {
            let err = NbdUri::parse(s).unwrap_err().to_string();
            assert!(err.contains(why) && err.contains(s), "{s}: {err}");
        }
    }

    #[test]
    fn tls_is_recognised_and_refused_clearly() {
        assert!(NbdUri::looks_like("nbds://h/x"));
        let err = NbdUri::parse("nbds://h/x").unwrap_err();
        assert!(matches!(err, NbdError::TlsUnsupported { .. }));
        assert!(err.to_string().contains("TLS"), "{err}");
    }

    #[test]
    fn paths_are_not_uris() {
        for s in ["disk.img", "/dev/sdb", "nbd.img", "./nbd:/x"] {
            assert!(!NbdUri::looks_like(s), "{s}");
        }
    }
}
