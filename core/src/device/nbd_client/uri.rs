//! NBD URIs as qemu and libnbd write them, parsed in this one place.
//!
//! * `nbd://HOST[:PORT][/EXPORT]` — TCP, port 10809 unless given; `HOST`
//!   may be a name, an IPv4 address or a bracketed IPv6 address.
//! * `nbd+unix:///[EXPORT]?socket=PATH` — a unix socket; the authority
//!   must be empty.
//!
//! * `nbds://…` and `nbds+unix://…` — the same over TLS (`NBD_OPT_STARTTLS`),
//!   with libnbd's query parameters: `tls-certificates=DIR` (a directory
//!   holding `ca-cert.pem`, and `client-cert.pem` with `client-key.pem` when
//!   the server wants a client certificate; the names qemu and nbdkit use),
//!   and `tls-hostname=NAME` (the name the server's certificate must carry;
//!   the URI's host by default, `localhost` for a unix socket).
//!
//! The export name is everything after the first `/` of the path,
//! percent-decoded (so `nbd://h/a%20b` names `a b`, as libnbd reads it).

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
    /// TLS settings for `nbds://` and `nbds+unix://`; `None`: plain.
    pub tls: Option<TlsParams>,
}

/// What an `nbds` URI says about TLS.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct TlsParams {
    /// `tls-certificates=DIR`; `None`: libnbd's default directories.
    pub certificates: Option<PathBuf>,
    /// `tls-hostname=NAME`: the name the server's certificate must carry.
    pub hostname: Option<String>,
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
        let (unix, tls) = match scheme {
            "nbd" => (false, None),
            "nbd+unix" => (true, None),
            "nbds" => (false, Some(TlsParams::default())),
            "nbds+unix" => (true, Some(TlsParams::default())),
            _ => return Err(bad("the scheme must be nbd, nbd+unix, nbds or nbds+unix")),
        };
        let mut tls = tls;
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
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| bad(&format!("unsupported query parameter {pair:?}")))?;
            let value =
                percent_decode(value).ok_or_else(|| bad(&format!("bad %-escape in {key}")))?;
            match (key, tls.as_mut()) {
                ("socket", _) if unix => socket = Some(PathBuf::from(value)),
                ("tls-certificates", Some(t)) => t.certificates = Some(PathBuf::from(value)),
                ("tls-hostname", Some(t)) => t.hostname = Some(value),
                ("tls-certificates" | "tls-hostname", None) => {
                    return Err(bad(&format!("{key} needs TLS: write nbds:// or nbds+unix://")));
                }
                _ => return Err(bad(&format!("unsupported query parameter {pair:?}"))),
            }
        }
        let address = if unix {
            if !authority.is_empty() {
                return Err(bad(&format!(
                    "{scheme}:// takes no host: write {scheme}:///EXPORT?socket=PATH"
                )));
            }
            Address::Unix(socket.ok_or_else(|| bad(&format!("{scheme}:// needs ?socket=PATH")))?)
        } else {
            let (host, port) = split_host_port(authority).ok_or_else(|| bad("bad host or port"))?;
            if host.is_empty() {
                return Err(bad(&format!("{scheme}:// needs a host")));
            }
            Address::Tcp { host, port }
        };
        Ok(NbdUri { address, export, tls })
    }

    /// The name the server's certificate must carry (TLS only).
    pub fn tls_hostname(&self) -> String {
        let asked = self.tls.as_ref().and_then(|t| t.hostname.clone());
        asked.unwrap_or_else(|| match &self.address {
            Address::Tcp { host, .. } => host.clone(),
            Address::Unix(_) => "localhost".to_owned(),
        })
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
        let s = if self.tls.is_some() { "s" } else { "" };
        let mut query = Vec::new();
        match &self.address {
            Address::Tcp { host, port } if host.contains(':') => {
                write!(f, "nbd{s}://[{host}]:{port}/{}", self.export)?
            }
            Address::Tcp { host, port } => write!(f, "nbd{s}://{host}:{port}/{}", self.export)?,
            Address::Unix(path) => {
                write!(f, "nbd{s}+unix:///{}", self.export)?;
                query.push(format!("socket={}", path.display()));
            }
        }
        if let Some(tls) = &self.tls {
            if let Some(dir) = &tls.certificates {
                query.push(format!("tls-certificates={}", dir.display()));
            }
            if let Some(name) = &tls.hostname {
                query.push(format!("tls-hostname={name}"));
            }
        }
        if !query.is_empty() {
            write!(f, "?{}", query.join("&"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(host: &str, port: u16, export: &str) -> NbdUri {
        NbdUri {
            address: Address::Tcp { host: host.into(), port },
            export: export.into(),
            tls: None,
        }
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
        for s in [
            "nbd://h:1/e",
            "nbd://[::1]:2/",
            "nbd+unix:///d?socket=/s",
            "nbds://h:3/e?tls-certificates=/etc/pki/x",
            "nbds+unix:///d?socket=/s&tls-certificates=/c&tls-hostname=srv",
        ] {
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
            ("nbd://h/x?tls-certificates=/c", "needs TLS"),
            ("nbds+unix:///x", "needs ?socket"),
        ] {
            let err = NbdUri::parse(s).unwrap_err().to_string();
            assert!(err.contains(why) && err.contains(s), "{s}: {err}");
        }
    }

    #[test]
    fn tls_forms_as_libnbd_writes_them() {
        assert!(NbdUri::looks_like("nbds://h/x"));
        let u = NbdUri::parse("nbds://h/x?tls-certificates=/etc/pki/a%20b").unwrap();
        assert_eq!(u.address, Address::Tcp { host: "h".into(), port: DEFAULT_PORT });
        let tls = u.tls.as_ref().unwrap();
        assert_eq!(tls.certificates.as_deref(), Some(std::path::Path::new("/etc/pki/a b")));
        assert_eq!(u.tls_hostname(), "h");
        let u = NbdUri::parse("nbds+unix:///?socket=/s&tls-hostname=server.example").unwrap();
        assert_eq!(u.tls.as_ref().unwrap().certificates, None);
        assert_eq!(u.tls_hostname(), "server.example");
        let u = NbdUri::parse("nbds+unix:///?socket=/s").unwrap();
        assert_eq!(u.tls_hostname(), "localhost");
        assert_eq!(NbdUri::parse("nbd://h/x").unwrap().tls, None);
    }

    #[test]
    fn paths_are_not_uris() {
        for s in ["disk.img", "/dev/sdb", "nbd.img", "./nbd:/x"] {
            assert!(!NbdUri::looks_like(s), "{s}");
        }
    }
}
