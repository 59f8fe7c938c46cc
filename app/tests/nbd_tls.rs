//! `nbds://` exports: TLS with certificates, against servers nobody here
//! wrote — nbdkit `--tls=require` and qemu-nbd with `tls-creds-x509` —
//! with certificates `certtool` (GnuTLS) makes in the test. A wrong CA, a
//! missing client certificate and plain `nbd://` to a TLS-only server are
//! refused with a clear error, and nothing is written.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use livemirror_testkit::daemon::Daemon;
use livemirror_testkit::image::qemu_img_identical;
use livemirror_testkit::{pattern, tools};

const SIZE: usize = 8 << 20;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn certtool(dir: &Path, args: &[&str]) {
    tools::require("certtool");
    let out = Command::new("certtool").current_dir(dir).args(args).output().unwrap();
    assert!(out.status.success(), "certtool {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A CA in `dir` (ca-cert.pem, ca-key.pem) and, signed by it, a server
/// certificate for `localhost` and a client certificate, under the names
/// nbdkit, qemu and libnbd look for.
fn pki(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let write = |name: &str, text: &str| std::fs::write(dir.join(name), text).unwrap();
    write("ca.info", "cn = livemirror test CA\nca\ncert_signing_key\nexpiration_days = 2\n");
    write(
        "server.info",
        "organization = livemirror test\ncn = localhost\ndns_name = localhost\n\
         ip_address = 127.0.0.1\ntls_www_server\nencryption_key\nsigning_key\nexpiration_days = 2\n",
    );
    write(
        "client.info",
        "cn = livemirror client\ntls_www_client\nencryption_key\nsigning_key\nexpiration_days = 2\n",
    );
    for key in ["ca-key.pem", "server-key.pem", "client-key.pem"] {
        certtool(dir, &["--generate-privkey", "--key-type=rsa", "--bits=2048", "--outfile", key]);
    }
    certtool(
        dir,
        &[
            "--generate-self-signed",
            "--load-privkey=ca-key.pem",
            "--template=ca.info",
            "--outfile=ca-cert.pem",
        ],
    );
    for who in ["server", "client"] {
        certtool(
            dir,
            &[
                "--generate-certificate",
                "--load-ca-certificate=ca-cert.pem",
                "--load-ca-privkey=ca-key.pem",
                &format!("--load-privkey={who}-key.pem"),
                &format!("--template={who}.info"),
                &format!("--outfile={who}-cert.pem"),
            ],
        );
    }
    dir.to_path_buf()
}

/// A source of pattern bytes and a zero-filled target file of its size.
fn images(dir: &Path) -> (PathBuf, PathBuf) {
    let (src, dst) = (dir.join("src.img"), dir.join("dst.img"));
    std::fs::write(&src, pattern(SIZE, 9)).unwrap();
    std::fs::File::create(&dst).unwrap().set_len(SIZE as u64).unwrap();
    (src, dst)
}

fn clone(source: &str, target: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_livemirror"))
        .args(["clone", source, target])
        .env("LIVEMIRROR_STATE_DIR", std::env::temp_dir().join("livemirror-nbd-tls-state"))
        .output()
        .unwrap()
}

/// `nbds+unix://` for the daemon's socket with certificates from `certs`.
fn tls_uri(server: &Daemon, certs: &Path) -> String {
    format!("nbds+unix:///?socket={}&tls-certificates={}", server.socket.display(), certs.display())
}

/// An nbdkit file export over `dst` that speaks only TLS.
fn nbdkit_tls(certs: &Path, dst: &Path, verify_peer: bool) -> Daemon {
    let dir = format!("--tls-certificates={}", s(certs));
    let mut args = vec!["--tls=require", dir.as_str()];
    if verify_peer {
        args.push("--tls-verify-peer");
    }
    args.extend(["file", s(dst)]);
    Daemon::nbdkit(&args)
}

fn all_zero(path: &Path) -> bool {
    std::fs::read(path).unwrap().iter().all(|b| *b == 0)
}

#[test]
fn clone_onto_an_nbdkit_tls_export_with_a_client_certificate_is_identical() {
    let dir = tempfile::tempdir().unwrap();
    let certs = pki(&dir.path().join("pki"));
    let (src, dst) = images(dir.path());
    // The server checks the client's certificate too.
    let server = nbdkit_tls(&certs, &dst, true);
    let out = clone(s(&src), &tls_uri(&server, &certs));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && err.contains("identical"), "{err}");
    drop(server);
    assert!(qemu_img_identical(&src, &dst));
}

#[test]
fn a_qemu_nbd_tls_export_is_a_source() {
    let dir = tempfile::tempdir().unwrap();
    let certs = pki(&dir.path().join("pki"));
    let (src, dst) = images(dir.path());
    std::fs::remove_file(&dst).unwrap();
    let creds = format!("tls-creds-x509,id=tls0,dir={},endpoint=server", s(&certs));
    let server = Daemon::spawn(
        "qemu-nbd",
        &["--object", &creds, "--tls-creds", "tls0", "-f", "raw", "-r", "-k", "{sock}", s(&src)],
    );
    let out = clone(&tls_uri(&server, &certs), s(&dst));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && err.contains("identical"), "{err}");
    drop(server);
    tools::assert_identical(&src, &dst);
}

#[test]
fn a_wrong_ca_a_missing_client_certificate_or_plain_nbd_are_refused_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let certs = pki(&dir.path().join("pki"));
    let other = pki(&dir.path().join("other-pki"));
    let (src, dst) = images(dir.path());
    let server = nbdkit_tls(&certs, &dst, true);

    // Another CA's certificate: the server's is not trusted.
    let out = clone(s(&src), &tls_uri(&server, &other));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("TLS: the handshake failed") && err.contains("certificate"), "{err}");

    // The right CA but no client certificate, which this server demands.
    let no_client = dir.path().join("ca-only");
    std::fs::create_dir(&no_client).unwrap();
    std::fs::copy(certs.join("ca-cert.pem"), no_client.join("ca-cert.pem")).unwrap();
    let out = clone(s(&src), &tls_uri(&server, &no_client));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("TLS") || err.contains("connection"), "{err}");

    // Plain NBD to a server that requires TLS.
    let out = clone(s(&src), &server.uri());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("requires TLS: write nbds://"), "{err}");

    // A directory without ca-cert.pem.
    let out = clone(s(&src), &tls_uri(&server, dir.path()));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("ca-cert.pem"), "{err}");

    drop(server);
    assert!(all_zero(&dst), "a refused connection wrote to the target");
}
