//! TLS to PostgreSQL, with libpq's names for it in the database address.
//!
//! tokio-postgres knows `sslmode=disable|prefer|require` and nothing of
//! certificates; operators write libpq's `sslmode=verify-full` and
//! `sslrootcert=…`. So the address is read here first: those two are taken
//! out, and tokio-postgres gets the rest with a mode it knows.
//!
//! Unlike libpq, every TLS connection checks the server's certificate and
//! its name (libpq's `prefer` and `require` encrypt without checking, which
//! a machine in the middle defeats): `prefer` and `require` here mean
//! libpq's `verify-full` whenever TLS is used. `prefer` (the default, as in
//! libpq) still talks plainly to a server that offers no TLS; `require`
//! does not. A Unix socket never uses TLS (PostgreSQL offers none there).

use std::path::PathBuf;
use std::sync::Arc;

use percent_encoding::percent_decode_str;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use tokio_postgres::config::{Host, SslMode};

use crate::StorageError;

/// Where the server's certificate must lead to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Roots {
    /// The system's trusted roots (no `sslrootcert`, or `sslrootcert=system`).
    System,
    /// The certificates in this PEM file, and only those.
    File(PathBuf),
}

/// A database address with its TLS settings taken out.
#[derive(Debug)]
pub(crate) struct Address {
    /// What tokio-postgres parses.
    pub config: tokio_postgres::Config,
    pub roots: Roots,
}

/// Read `url` (a `postgres://` URL or libpq's key=value form).
pub(crate) fn parse(url: &str) -> Result<Address, StorageError> {
    let mut mode = None;
    let mut roots = Roots::System;
    let mut take = |key: &str, value: &str| -> Result<bool, StorageError> {
        match key {
            "sslmode" => {
                mode = Some(match value {
                    "disable" => SslMode::Disable,
                    "prefer" => SslMode::Prefer,
                    // Checked either way (above).
                    "require" | "verify-ca" | "verify-full" => SslMode::Require,
                    other => {
                        return Err(StorageError::Postgres(format!(
                            "the database address: sslmode={other} is not one of disable, prefer, require, verify-ca, verify-full"
                        )))
                    }
                });
                Ok(true)
            }
            "sslrootcert" => {
                roots = match value {
                    "system" => Roots::System,
                    "" => {
                        return Err(StorageError::Postgres(
                            "the database address: sslrootcert is empty".into(),
                        ))
                    }
                    path => Roots::File(PathBuf::from(path)),
                };
                Ok(true)
            }
            _ => Ok(false),
        }
    };
    let rest = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        without_query_keys(url, &mut take)?
    } else {
        without_pairs(url, &mut take)?
    };
    let mut config: tokio_postgres::Config = rest
        .parse()
        .map_err(|e| StorageError::Postgres(format!("the database address: {e}")))?;
    // A mode this reading missed and tokio-postgres's found (their readings
    // of an odd address differ) stands: never lowered to `prefer`.
    let mode = mode.unwrap_or(config.get_ssl_mode());
    config.ssl_mode(if over_tcp(&config) {
        mode
    } else {
        SslMode::Disable
    });
    Ok(Address { config, roots })
}

/// Whether `config` connects over TCP to some host (`hostaddr` does,
/// whatever `host` says).
fn over_tcp(config: &tokio_postgres::Config) -> bool {
    !config.get_hostaddrs().is_empty()
        || config.get_hosts().iter().any(|h| matches!(h, Host::Tcp(_)))
}

/// The URL without the query keys `take` takes. The query starts at the
/// first `?` after the credentials, which end at the first `@` (as
/// tokio-postgres reads it: a password may hold a `?`).
fn without_query_keys(
    url: &str,
    take: &mut impl FnMut(&str, &str) -> Result<bool, StorageError>,
) -> Result<String, StorageError> {
    let scheme = url.find("://").map_or(0, |i| i + 3);
    let past_credentials = url[scheme..].find('@').map_or(scheme, |i| scheme + i + 1);
    let Some(q) = url[past_credentials..].find('?') else {
        return Ok(url.to_string());
    };
    let (base, query) = (
        &url[..past_credentials + q],
        &url[past_credentials + q + 1..],
    );
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
        if !take(&decode(k), &decode(v))? {
            kept.push(pair);
        }
    }
    Ok(if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    })
}

/// libpq's `key=value key='quoted \' value'` form without the pairs `take`
/// takes.
fn without_pairs(
    s: &str,
    take: &mut impl FnMut(&str, &str) -> Result<bool, StorageError>,
) -> Result<String, StorageError> {
    let bad =
        || StorageError::Postgres("the database address: a key=value pair does not parse".into());
    let mut kept = String::new();
    let mut rest = s.trim_start();
    while !rest.is_empty() {
        let start = rest;
        let eq = rest.find('=').ok_or_else(bad)?;
        let key = rest[..eq].trim();
        rest = rest[eq + 1..].trim_start();
        let mut value = String::new();
        if let Some(quoted) = rest.strip_prefix('\'') {
            let mut chars = quoted.char_indices();
            let end = loop {
                match chars.next().ok_or_else(bad)? {
                    (_, '\\') => value.push(chars.next().ok_or_else(bad)?.1),
                    (i, '\'') => break i + 1,
                    (_, c) => value.push(c),
                }
            };
            rest = &quoted[end..];
        } else {
            // Up to whitespace that is not escaped (`a\\ b` is "a b").
            let mut chars = rest.char_indices();
            let end = loop {
                match chars.next() {
                    None => break rest.len(),
                    Some((i, c)) if c.is_whitespace() => break i,
                    Some((_, '\\')) => {
                        if let Some((_, c)) = chars.next() {
                            value.push(c);
                        }
                    }
                    Some((_, c)) => value.push(c),
                }
            };
            rest = &rest[end..];
        }
        let pair = &start[..start.len() - rest.len()];
        rest = rest.trim_start();
        if !take(key, &value)? {
            kept.push_str(pair);
            kept.push(' ');
        }
    }
    Ok(kept.trim_end().to_string())
}

/// The TLS set-up for `address`: the server's certificate must chain to one
/// of its roots and name the host connected to. Nothing is read when the
/// address never uses TLS.
pub(crate) fn connector(
    address: &Address,
) -> Result<tokio_postgres_rustls::MakeRustlsConnect, StorageError> {
    let mut store = rustls::RootCertStore::empty();
    let roots = &address.roots;
    match roots {
        _ if address.config.get_ssl_mode() == SslMode::Disable => {}
        Roots::System => {
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                // One the library cannot use is skipped, as browsers do.
                let _ = store.add(cert);
            }
        }
        Roots::File(path) => {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect())
                .map_err(|e| {
                    StorageError::Postgres(format!(
                        "sslrootcert {}: no certificates read ({e})",
                        path.display()
                    ))
                })?;
            for cert in certs {
                store.add(cert).map_err(|e| {
                    StorageError::Postgres(format!("sslrootcert {}: {e}", path.display()))
                })?;
            }
        }
    }
    // With `prefer`, a system without trusted roots still talks plainly to
    // a server that offers no TLS; one that does is refused at its
    // certificate (the handshake says why).
    let needed = match roots {
        Roots::System => address.config.get_ssl_mode() == SslMode::Require,
        Roots::File(_) => address.config.get_ssl_mode() != SslMode::Disable,
    };
    if store.is_empty() && needed {
        return Err(StorageError::Postgres(match roots {
            Roots::System => "no trusted root certificates on this system to check the database's with: give sslrootcert=FILE in the database address".into(),
            Roots::File(path) => format!("sslrootcert {}: no certificates in it", path.display()),
        }));
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StorageError::Postgres(format!("TLS: {e}")))?
        .with_root_certificates(store)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// A refused certificate, with what to do about it.
pub(crate) fn explained(e: StorageError) -> StorageError {
    match e {
        StorageError::Postgres(said) if said.contains("invalid peer certificate") => {
            StorageError::Postgres(format!(
                "{said} (the database's certificate must come from the authority in sslrootcert=FILE, or one the system trusts, and name the host connected to; a server whose certificate nobody can check, such as Debian's default one, needs its authority named, or sslmode=disable where nobody else can reach the network between)"
            ))
        }
        other => other,
    }
}

/// How the connection to `url` is secured, for the log: `socket` (a Unix
/// socket, never TLS), `disable`, `prefer` (TLS if the server offers it:
/// one in the middle can refuse it unseen) or `require`; `None` for an
/// address that does not parse.
pub fn security_of(url: &str) -> Option<&'static str> {
    let a = parse(url).ok()?;
    Some(match a.config.get_ssl_mode() {
        _ if !over_tcp(&a.config) => "socket",
        SslMode::Disable => "disable",
        SslMode::Require => "require",
        _ => "prefer",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(url: &str) -> (String, SslMode, Roots) {
        let a = parse(url).unwrap();
        (
            format!("{:?}", a.config.get_hosts()),
            a.config.get_ssl_mode(),
            a.roots,
        )
    }

    #[test]
    fn libpq_names_are_read_from_a_url() {
        let (_, mode, roots) = read("postgres://u:p@db.example:5432/convene?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&application_name=x");
        assert_eq!(mode, SslMode::Require);
        assert_eq!(roots, Roots::File("/etc/ca.pem".into()));
        let (_, mode, roots) = read("postgresql://u@db.example/convene");
        assert_eq!(mode, SslMode::Prefer, "libpq's default");
        assert_eq!(roots, Roots::System);
        let (_, mode, _) = read("postgres://u@db.example/convene?sslmode=disable");
        assert_eq!(mode, SslMode::Disable);
        let (_, mode, roots) = read("postgres://u@db.example/c?sslrootcert=system&sslmode=require");
        assert_eq!((mode, roots), (SslMode::Require, Roots::System));
    }

    #[test]
    fn libpq_names_are_read_from_key_value_pairs() {
        let a = parse("host=db.example user=convene sslmode=verify-ca sslrootcert='/etc/my ca\\'s.pem' dbname=convene").unwrap();
        assert_eq!(a.config.get_ssl_mode(), SslMode::Require);
        assert_eq!(a.roots, Roots::File("/etc/my ca's.pem".into()));
        assert_eq!(a.config.get_dbname(), Some("convene"));
        assert_eq!(a.config.get_user(), Some("convene"));
        let a = parse("host = db.example password='a b' sslmode = prefer").unwrap();
        assert_eq!(a.config.get_ssl_mode(), SslMode::Prefer);
        assert_eq!(a.config.get_password(), Some(&b"a b"[..]));
    }

    #[test]
    fn the_address_is_read_as_tokio_postgres_reads_it() {
        // A `?` in the password is not the query's start.
        let a = parse("postgres://convene:pa?ss@db.example/convene?sslmode=require").unwrap();
        assert_eq!(a.config.get_ssl_mode(), SslMode::Require);
        assert_eq!(a.config.get_password(), Some(&b"pa?ss"[..]));
        // An escaped space in an unquoted value is part of it.
        let a = parse("host=db.example user=convene password=a\\ b sslmode=require").unwrap();
        assert_eq!(a.config.get_ssl_mode(), SslMode::Require);
        assert_eq!(a.config.get_password(), Some(&b"a b"[..]));
        let a = parse("host=db.example password=x\\ sslmode=disable").unwrap();
        assert_eq!(a.config.get_password(), Some(&b"x sslmode=disable"[..]));
        assert_eq!(
            a.config.get_ssl_mode(),
            SslMode::Prefer,
            "not taken for a mode"
        );
        // `hostaddr` connects over TCP: TLS as asked, never turned off.
        for url in [
            "hostaddr=10.0.0.5 user=convene dbname=convene sslmode=verify-full",
            "postgres://convene:pw@/convene?hostaddr=10.0.0.5&sslmode=require",
            "host=/run/postgresql hostaddr=10.0.0.5 sslmode=require",
        ] {
            assert_eq!(
                parse(url).unwrap().config.get_ssl_mode(),
                SslMode::Require,
                "{url}"
            );
            assert_eq!(security_of(url), Some("require"), "{url}");
        }
        assert_eq!(security_of("host=db.example"), Some("prefer"));
        assert_eq!(
            security_of("host=/run/postgresql sslmode=require"),
            Some("socket")
        );
    }

    #[test]
    fn a_socket_never_asks_for_tls() {
        let a = parse("host=/run/postgresql user=convene sslmode=require").unwrap();
        assert_eq!(a.config.get_ssl_mode(), SslMode::Disable);
        let a = parse("postgres://convene@%2Frun%2Fpostgresql/convene").unwrap();
        assert_eq!(a.config.get_ssl_mode(), SslMode::Disable);
    }

    #[test]
    fn bad_settings_are_said_without_the_password() {
        for url in [
            "postgres://u:secret@h/db?sslmode=allow",
            "host=h password=secret sslmode=allow",
            "host=h password='secret sslmode=require",
            "postgres://u:secret@h/db?sslrootcert=",
        ] {
            let e = parse(url).unwrap_err().to_string();
            assert!(!e.contains("secret"), "{url}: {e}");
        }
        let address = parse("host=h sslrootcert=/nonexistent/ca.pem").unwrap();
        let e = connector(&address).err().unwrap().to_string();
        assert!(e.contains("/nonexistent/ca.pem"), "{e}");
    }
}
