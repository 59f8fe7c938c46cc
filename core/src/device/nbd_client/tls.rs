//! TLS for `nbds://` exports, through rustls.
//!
//! The certificates are found the way libnbd finds them: the directory of
//! `tls-certificates=DIR`, else `$HOME/.pki/libnbd`, else `/etc/pki/libnbd`.
//! It must hold `ca-cert.pem` (the authority the server's certificate must
//! chain to; the system's roots are not used: NBD servers carry
//! certificates from their own CA, as qemu's and nbdkit's documentation
//! set them up), and may hold `client-cert.pem` with `client-key.pem`,
//! offered when the server asks for a client certificate (nbdkit
//! `--tls-verify-peer`, qemu `verify-peer=on`). The server's certificate
//! must name the URI's host (or `tls-hostname`). There is no way to turn
//! verification off: a TLS connection to an unknown peer would only look
//! safe.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};

use super::{NbdError, NbdUri};

/// Why a TLS connection could not be set up or made.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(
        "no certificates: add ?tls-certificates=DIR (a directory with ca-cert.pem, and \
         client-cert.pem and client-key.pem if the server checks clients), or put them in \
         ~/.pki/libnbd or /etc/pki/libnbd"
    )]
    NoCertificates,
    #[error("cannot read {}: {source}", path.display())]
    Pem { path: PathBuf, source: rustls::pki_types::pem::Error },
    #[error("{}: {source}", path.display())]
    BadAuthority { path: PathBuf, source: rustls::Error },
    #[error("{} holds no certificate", path.display())]
    NoAuthority { path: PathBuf },
    #[error("{0}")]
    Config(#[from] rustls::Error),
    #[error("{} has only one of client-cert.pem and client-key.pem: both or neither", dir.display())]
    HalfClientPair { dir: PathBuf },
    #[error("{name:?} is not a host name the certificate can carry")]
    HostName { name: String },
    #[error("the handshake failed: {0}")]
    Handshake(#[source] std::io::Error),
}

/// What every TLS connection to one export is made with.
#[derive(Clone)]
pub(super) struct TlsSetup {
    pub config: Arc<ClientConfig>,
    pub server_name: ServerName<'static>,
}

/// The directory the certificates are read from: the URI's, else the
/// first of libnbd's defaults that holds a CA certificate.
fn certificate_dir(uri: &NbdUri) -> Option<PathBuf> {
    if let Some(dir) = uri.tls.as_ref().and_then(|t| t.certificates.clone()) {
        return Some(dir);
    }
    let home = std::env::var_os("HOME").map(|h| Path::new(&h).join(".pki/libnbd"));
    home.into_iter()
        .chain([PathBuf::from("/etc/pki/libnbd")])
        .find(|d| d.join("ca-cert.pem").exists())
}

/// Reads the certificates for `uri` and builds the client configuration.
pub(super) fn setup(uri: &NbdUri) -> Result<TlsSetup, NbdError> {
    let bad = |source: TlsError| NbdError::Tls { uri: uri.to_string(), source: Box::new(source) };
    let dir = certificate_dir(uri).ok_or_else(|| bad(TlsError::NoCertificates))?;
    let file = |name: &str| dir.join(name);
    let pem_error = |path: &Path, source| bad(TlsError::Pem { path: path.to_owned(), source });

    let ca = file("ca-cert.pem");
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&ca).map_err(|e| pem_error(&ca, e))? {
        let cert = cert.map_err(|e| pem_error(&ca, e))?;
        roots
            .add(cert)
            .map_err(|source| bad(TlsError::BadAuthority { path: ca.clone(), source }))?;
    }
    if roots.is_empty() {
        return Err(bad(TlsError::NoAuthority { path: ca }));
    }

    // rustls 0.23.48 deprecates the ring provider for lacking post-quantum
    // key exchange (only aws-lc-rs has it). The NBD servers here (GnuTLS in
    // nbdkit and qemu) negotiate X25519 or P-256 with it, and ring builds
    // with a C compiler alone, for Windows too; aws-lc-rs needs cmake.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.into()))?
        .with_root_certificates(roots);
    let (cert, key) = (file("client-cert.pem"), file("client-key.pem"));
    let config = match (cert.exists(), key.exists()) {
        (true, true) => {
            let chain = CertificateDer::pem_file_iter(&cert)
                .and_then(Iterator::collect::<Result<Vec<_>, _>>)
                .map_err(|e| pem_error(&cert, e))?;
            let key = PrivateKeyDer::from_pem_file(&key).map_err(|e| pem_error(&key, e))?;
            builder.with_client_auth_cert(chain, key).map_err(|e| bad(e.into()))?
        }
        (false, false) => builder.with_no_client_auth(),
        _ => {
            return Err(bad(TlsError::HalfClientPair { dir }));
        }
    };
    let name = uri.tls_hostname();
    let server_name = ServerName::try_from(name.clone())
        .map_err(|_| bad(TlsError::HostName { name: name.clone() }))?;
    Ok(TlsSetup { config: Arc::new(config), server_name })
}
