//! Convene's own TLS: the certificate chain and private key from PEM files
//! (`--tls-cert`, `--tls-key`), served by rustls with aws-lc-rs (the crypto
//! str0m already brings for DTLS-SRTP, so there is one crypto library).
//!
//! Certificates are renewed often (Let's Encrypt every 60–90 days, internal
//! CAs at their own pace), so they are reloaded without a restart: when
//! either file changes (checked every [`POLL`]) and on SIGHUP. New handshakes
//! get the new certificate; connections already open keep theirs. A reload
//! that fails (a file missing or half-written, bad PEM, a key that is not the
//! certificate's) changes nothing: the certificate in use stays, and the error
//! is logged naming the file. A renewal that writes the certificate before the
//! key may log one such error in between; the reload after the key's change
//! then succeeds.
//!
//! Which connections go through TLS is listener.rs's concern.

use std::fmt::Write as _;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use sha2::{Digest, Sha256};
use tracing::{error, info, warn};

/// How often the files are checked for changes.
pub const POLL: Duration = Duration::from_secs(5);
/// Larger files are not certificates or keys (and a path such as /dev/zero
/// must not be read for ever).
const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// Why a certificate or key could not be used; each names its file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("TLS {what} {}: {source}", path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("TLS {what} {}: larger than {MAX_FILE_BYTES} bytes", path.display())]
    TooLarge { what: &'static str, path: PathBuf },
    #[error("TLS {what} {}: not valid PEM: {source}", path.display())]
    Pem {
        what: &'static str,
        path: PathBuf,
        source: rustls::pki_types::pem::Error,
    },
    #[error("TLS certificate {}: no certificate in it (expected PEM \"BEGIN CERTIFICATE\" blocks, the server's first)", path.display())]
    NoCertificate { path: PathBuf },
    #[error("TLS key {}: no private key in it (expected PEM \"BEGIN PRIVATE KEY\", \"BEGIN RSA PRIVATE KEY\" or \"BEGIN EC PRIVATE KEY\")", path.display())]
    NoKey { path: PathBuf },
    #[error("TLS key {}: cannot be used: {source}", path.display())]
    BadKey {
        path: PathBuf,
        source: rustls::Error,
    },
    #[error("TLS certificate {}: cannot be used: {source}", path.display())]
    BadCertificate {
        path: PathBuf,
        source: rustls::Error,
    },
    #[error("TLS key {} is not the key of the certificate in {}", key.display(), cert.display())]
    Mismatch { cert: PathBuf, key: PathBuf },
}

/// Where the certificate chain and its key are read from.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// PEM: the server's certificate first, then the intermediates.
    pub cert: PathBuf,
    /// PEM: PKCS#8, RSA (PKCS#1) or SEC1 (EC).
    pub key: PathBuf,
}

/// What a file held when last read (a digest of its bytes; `None`:
/// unreadable). Contents rather than modification times: a rewrite within
/// the file system's timestamp granularity, a file renamed into place with an
/// older time, a symlink pointed elsewhere all count, and a file written again
/// unchanged does not. Reading two small files every few seconds costs nothing.
type Stamp = Option<[u8; 32]>;

fn stamp(path: &Path) -> Stamp {
    let bytes = read_file("file", path).ok()?;
    Some(Sha256::digest(bytes).into())
}

/// The certificate new handshakes are given, swapped whole on reload.
#[derive(Debug)]
pub struct Certificates {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
    /// The files' stamps as of the last load, successful or not (a failed one
    /// is not retried until a file changes again, or on SIGHUP).
    seen: Mutex<(Stamp, Stamp)>,
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

impl Certificates {
    /// Read both files; an error stops the server from starting.
    pub fn load(files: TlsFiles) -> Result<Arc<Certificates>, TlsError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let seen = (stamp(&files.cert), stamp(&files.key));
        let key = read(&files, &provider)?;
        info!(
            cert = %files.cert.display(),
            sha256 = %fingerprint(&key),
            chain = key.cert.len(),
            "TLS certificate loaded"
        );
        Ok(Arc::new(Certificates {
            files,
            provider,
            current: RwLock::new(Arc::new(key)),
            seen: Mutex::new(seen),
        }))
    }

    /// The certificate and key in use.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The rustls configuration for the listener: TLS 1.3 and 1.2 with
    /// rustls' default suites, HTTP/1.1 by ALPN, this resolver's certificate.
    pub fn server_config(self: &Arc<Self>) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
        let mut config = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// Read the files again; on success new handshakes get the new
    /// certificate, on failure the current one stays and the error is logged.
    pub fn reload(&self, why: &'static str) -> Result<(), TlsError> {
        let seen = (stamp(&self.files.cert), stamp(&self.files.key));
        *self.seen.lock().unwrap_or_else(|e| e.into_inner()) = seen;
        match read(&self.files, &self.provider) {
            Ok(key) => {
                let (sha256, chain) = (fingerprint(&key), key.cert.len());
                // In use before it is said to be: whoever reads the log line
                // and connects gets the new certificate.
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(key);
                info!(
                    cert = %self.files.cert.display(),
                    %sha256,
                    chain,
                    why,
                    "TLS certificate reloaded"
                );
                Ok(())
            }
            Err(e) => {
                error!(
                    why,
                    "TLS certificate not reloaded, still serving the previous one: {e}"
                );
                Err(e)
            }
        }
    }

    /// Whether either file changed since it was last read.
    fn changed(&self) -> bool {
        let now = (stamp(&self.files.cert), stamp(&self.files.key));
        *self.seen.lock().unwrap_or_else(|e| e.into_inner()) != now
    }

    /// Reload when the files change and on SIGHUP, until the task is aborted.
    pub fn spawn_reloader(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let certs = self.clone();
        tokio::spawn(async move {
            #[cfg(unix)]
            let mut hangup =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
                    Ok(s) => Some(s),
                    Err(e) => {
                        warn!("SIGHUP will not reload the TLS certificate: {e}");
                        None
                    }
                };
            let mut poll = tokio::time::interval(POLL);
            poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                #[cfg(unix)]
                let why = tokio::select! {
                    _ = poll.tick() => "changed",
                    Some(()) = async {
                        match hangup.as_mut() {
                            Some(h) => h.recv().await,
                            None => std::future::pending().await,
                        }
                    } => "SIGHUP",
                };
                #[cfg(not(unix))]
                let why = {
                    poll.tick().await;
                    "changed"
                };
                let c = certs.clone();
                // Reading files blocks; the result is logged by reload.
                let _ = tokio::task::spawn_blocking(move || {
                    if why == "SIGHUP" || c.changed() {
                        let _ = c.reload(why);
                    }
                })
                .await;
            }
        })
    }
}

/// The certificate chain and key from the files, checked to belong together.
fn read(files: &TlsFiles, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
    let cert_pem = read_file("certificate", &files.cert)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Pem {
            what: "certificate",
            path: files.cert.clone(),
            source,
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: files.cert.clone(),
        });
    }
    let key_pem = read_file("key", &files.key)?;
    let key = match PrivateKeyDer::from_pem_slice(&key_pem) {
        Ok(k) => k,
        Err(rustls::pki_types::pem::Error::NoItemsFound) => {
            return Err(TlsError::NoKey {
                path: files.key.clone(),
            })
        }
        Err(source) => {
            return Err(TlsError::Pem {
                what: "key",
                path: files.key.clone(),
                source,
            })
        }
    };
    let signing_key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|source| TlsError::BadKey {
            path: files.key.clone(),
            source,
        })?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        // A key type whose public half rustls cannot tell is taken as it is.
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            Ok(certified)
        }
        Err(rustls::Error::InconsistentKeys(_)) => Err(TlsError::Mismatch {
            cert: files.cert.clone(),
            key: files.key.clone(),
        }),
        Err(source) => Err(TlsError::BadCertificate {
            path: files.cert.clone(),
            source,
        }),
    }
}

fn read_file(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    let io = |source| TlsError::Read {
        what,
        path: path.to_path_buf(),
        source,
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .map_err(io)?
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(TlsError::TooLarge {
            what,
            path: path.to_path_buf(),
        });
    }
    Ok(bytes)
}

/// The server certificate's SHA-256 fingerprint as `openssl x509
/// -fingerprint -sha256` prints it, so an operator can tell which one is served.
fn fingerprint(key: &CertifiedKey) -> String {
    let digest = Sha256::digest(key.cert.first().map_or(&[][..], |c| c.as_ref()));
    let mut out = String::with_capacity(digest.len() * 3);
    for (i, b) in digest.iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        let _ = write!(out, "{b:02X}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate for localhost and its key (PKCS#8 PEM).
    fn self_signed(alg: &'static rcgen::SignatureAlgorithm) -> (String, String, Vec<u8>) {
        let key = rcgen::KeyPair::generate_for(alg).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert.pem(), key.serialize_pem(), key.serialize_der())
    }

    /// The key inside a PKCS#8 structure: for RSA that is PKCS#1, for EC
    /// SEC1, the other two forms `--tls-key` takes.
    fn inner_key(pkcs8: &[u8]) -> Vec<u8> {
        // SEQUENCE { INTEGER version, SEQUENCE algorithm, OCTET STRING key }
        fn header(der: &[u8]) -> (usize, usize) {
            match der[1] {
                n if n < 0x80 => (2, n as usize),
                0x81 => (3, der[2] as usize),
                0x82 => (4, (der[2] as usize) << 8 | der[3] as usize),
                _ => panic!("too long for a test key"),
            }
        }
        let (h, _) = header(pkcs8);
        let mut rest = &pkcs8[h..];
        for _ in 0..2 {
            let (h, len) = header(rest);
            rest = &rest[h + len..];
        }
        assert_eq!(rest[0], 0x04, "an OCTET STRING");
        let (h, len) = header(rest);
        rest[h..h + len].to_vec()
    }

    fn pem(label: &str, der: &[u8]) -> String {
        const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut text = String::new();
        for chunk in der.chunks(3) {
            let n =
                chunk.iter().fold(0u32, |n, b| n << 8 | u32::from(*b)) << (8 * (3 - chunk.len()));
            for i in 0..4 {
                text.push(if i <= chunk.len() {
                    B64[(n >> (18 - 6 * i) & 63) as usize] as char
                } else {
                    '='
                });
            }
        }
        let lines: Vec<&str> = text
            .as_bytes()
            .chunks(64)
            .map(|l| std::str::from_utf8(l).unwrap())
            .collect();
        format!(
            "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
            lines.join("\n")
        )
    }

    struct Dir(PathBuf);

    impl Dir {
        fn new() -> Dir {
            let d = std::env::temp_dir().join(format!("convene-tls-unit-{}", rand_suffix()));
            std::fs::create_dir_all(&d).unwrap();
            Dir(d)
        }

        fn files(&self, cert: &str, key: &str) -> TlsFiles {
            let files = TlsFiles {
                cert: self.0.join("cert.pem"),
                key: self.0.join("key.pem"),
            };
            std::fs::write(&files.cert, cert).unwrap();
            std::fs::write(&files.key, key).unwrap();
            files
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn rand_suffix() -> String {
        format!(
            "{}-{:?}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        )
    }

    fn served(certs: &Certificates) -> Vec<u8> {
        certs.current().cert[0].to_vec()
    }

    #[test]
    fn pkcs8_rsa_and_sec1_keys_are_taken() {
        let dir = Dir::new();
        let (cert, key, _) = self_signed(&rcgen::PKCS_ECDSA_P256_SHA256);
        Certificates::load(dir.files(&cert, &key)).expect("PKCS#8 EC");
        let (cert, _, der) = self_signed(&rcgen::PKCS_ECDSA_P384_SHA384);
        Certificates::load(dir.files(&cert, &pem("EC PRIVATE KEY", &inner_key(&der))))
            .expect("SEC1");
        let (cert, key, der) = self_signed(&rcgen::PKCS_RSA_SHA256);
        Certificates::load(dir.files(&cert, &key)).expect("PKCS#8 RSA");
        Certificates::load(dir.files(&cert, &pem("RSA PRIVATE KEY", &inner_key(&der))))
            .expect("PKCS#1 RSA");
        let (cert, key, _) = self_signed(&rcgen::PKCS_ED25519);
        Certificates::load(dir.files(&cert, &key)).expect("Ed25519");
    }

    #[test]
    fn unusable_files_are_refused_naming_the_file() {
        let dir = Dir::new();
        let (cert, key, _) = self_signed(&rcgen::PKCS_ECDSA_P256_SHA256);
        let (_, other_key, _) = self_signed(&rcgen::PKCS_ECDSA_P256_SHA256);
        let error = |cert: &str, key: &str| {
            Certificates::load(dir.files(cert, key))
                .unwrap_err()
                .to_string()
        };
        let e = error("", &key);
        assert!(e.contains("cert.pem: no certificate"), "{e}");
        let e = error(&key, &key);
        assert!(e.contains("cert.pem: no certificate"), "{e}");
        let e = error(&cert, &cert);
        assert!(e.contains("key.pem: no private key"), "{e}");
        let e = error(
            &cert,
            "-----BEGIN PRIVATE KEY-----\nnot base64!\n-----END PRIVATE KEY-----\n",
        );
        assert!(e.contains("key.pem: not valid PEM"), "{e}");
        let e = error(&cert, &other_key);
        assert!(
            e.contains("key.pem is not the key of the certificate in") && e.contains("cert.pem"),
            "{e}"
        );
        let e = error(&pem("CERTIFICATE", b"not DER at all"), &key);
        assert!(e.contains("cert.pem: cannot be used"), "{e}");
        let e = Certificates::load(TlsFiles {
            cert: dir.0.join("absent.pem"),
            key: dir.0.join("key.pem"),
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("absent.pem"), "{e}");
    }

    #[test]
    fn a_reload_swaps_the_certificate_or_keeps_it() {
        let dir = Dir::new();
        let (cert1, key1, _) = self_signed(&rcgen::PKCS_ECDSA_P256_SHA256);
        let certs = Certificates::load(dir.files(&cert1, &key1)).unwrap();
        let first = served(&certs);
        assert!(!certs.changed());
        let (cert2, key2, _) = self_signed(&rcgen::PKCS_ECDSA_P256_SHA256);
        // Half a renewal: a new certificate with the old key.
        std::fs::write(&certs.files.cert, &cert2).unwrap();
        assert!(certs.changed());
        let e = certs.reload("test").unwrap_err();
        assert!(matches!(e, TlsError::Mismatch { .. }), "{e}");
        assert_eq!(served(&certs), first, "the old one stays");
        assert!(!certs.changed(), "a failed reload is not retried unchanged");
        std::fs::write(&certs.files.key, &key2).unwrap();
        assert!(certs.changed());
        certs.reload("test").unwrap();
        assert_ne!(served(&certs), first);
        // Gone: kept.
        let second = served(&certs);
        std::fs::remove_file(&certs.files.cert).unwrap();
        assert!(certs.changed());
        assert!(certs.reload("test").is_err());
        assert_eq!(served(&certs), second);
    }

    #[test]
    fn fingerprints_are_written_as_openssl_does() {
        let dir = Dir::new();
        let (cert, key, _) = self_signed(&rcgen::PKCS_ECDSA_P256_SHA256);
        let certs = Certificates::load(dir.files(&cert, &key)).unwrap();
        let f = fingerprint(&certs.current());
        assert_eq!(f.len(), 32 * 3 - 1);
        assert!(f.split(':').all(|b| b.len() == 2
            && b.bytes()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_lowercase())));
    }
}
