//! TLS to a real PostgreSQL (one that takes TCP connections over TLS only):
//! what connects, and what a machine in the middle could not pass for it.

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

use crate::testing::postgres_over_tls;
use crate::Storage;

/// A certificate authority of the test's own.
fn authority(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

/// A server certificate for `names`, signed by `ca`: (certificate, key) PEM.
fn server_cert(ca: &CertifiedIssuer<'static, KeyPair>, names: &[&str]) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    let cert = params.signed_by(&key, ca).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn encrypted(storage: &Storage) -> bool {
    storage
        .with(|c| {
            c.int(
                "SELECT count(*) FROM pg_stat_ssl WHERE pid = pg_backend_pid() AND ssl",
                &[],
            )
        })
        .unwrap()
        == Some(1)
}

#[test]
fn the_database_over_tls_is_checked_against_its_authority_and_its_name() {
    let ca = authority("Test database CA");
    let (cert, key) = server_cert(&ca, &["localhost"]);
    let port = postgres_over_tls(&cert, &key);
    let dir = tempfile_dir();
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let ca_path = ca_file.display().to_string();
    let at = |host: &str, extra: &str| {
        format!("host={host} port={port} user=convene dbname=convene {extra}")
    };

    // Trusted by its authority, under its own name: encrypted, in each of
    // the ways an operator may write it.
    for extra in [
        format!("sslmode=verify-full sslrootcert={ca_path}"),
        format!("sslmode=require sslrootcert={ca_path}"),
        format!("sslrootcert={ca_path}"),
    ] {
        let s =
            Storage::connect(&at("localhost", &extra)).unwrap_or_else(|e| panic!("{extra}: {e}"));
        assert!(encrypted(&s), "{extra}: the connection is encrypted");
    }
    let url = format!(
        "postgres://convene@localhost:{port}/convene?sslmode=verify-full&sslrootcert={}",
        ca_path.replace('/', "%2F")
    );
    assert!(encrypted(&Storage::connect(&url).unwrap()), "the URL form");

    // A server that cannot show a certificate from the named authority, or
    // shows one for another name, is refused: what a machine in the middle
    // would be. So is one checked against the system's roots, which do not
    // hold the test's authority (libpq's `require` would have connected).
    let other = authority("Someone else's CA");
    let other_file = dir.join("other.pem");
    std::fs::write(&other_file, other.pem()).unwrap();
    for (host, extra, why) in [
        (
            "localhost",
            format!("sslmode=require sslrootcert={}", other_file.display()),
            "another authority",
        ),
        (
            "localhost",
            "sslmode=require".to_string(),
            "the system's roots",
        ),
        ("localhost", String::new(), "the system's roots, by default"),
        (
            "127.0.0.1",
            format!("sslmode=verify-full sslrootcert={ca_path}"),
            "a name the certificate does not hold",
        ),
    ] {
        let e = Storage::connect(&at(host, &extra))
            .err()
            .unwrap_or_else(|| panic!("{why}: connected"));
        let said = e.to_string();
        assert!(
            said.contains("invalid peer certificate") && said.contains("sslrootcert"),
            "{why}: says why, and what to do: {said}"
        );
    }

    // Without TLS the server refuses (it takes TCP over TLS only): nothing
    // above passed without it.
    let e = Storage::connect(&at("localhost", "sslmode=disable"))
        .err()
        .unwrap();
    assert!(e.to_string().contains("no encryption"), "{e}");
    let _ = std::fs::remove_dir_all(dir);
}

fn tempfile_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("convene-pg-tls-test-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}
