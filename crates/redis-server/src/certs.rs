//! Certificates made in the test process (rcgen): a CA of the test's own, and a server and a
//! client certificate it signs. Nothing here is trusted by the system, so a client that does
//! not pass the CA explicitly must refuse the server.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// A certificate authority generated for one test (a fresh key every time).
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate and its key, written as PEM files.
#[derive(Debug, Clone)]
pub struct PemPair {
    /// The certificate (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM, PKCS#8).
    pub key: PathBuf,
}

impl TestCa {
    /// A new CA whose certificate is named `name`.
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::default();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("generating a CA key");
        Self {
            issuer: CertifiedIssuer::self_signed(params, key).expect("signing the CA certificate"),
        }
    }

    /// The CA's certificate (PEM).
    pub fn cert_pem(&self) -> String {
        self.issuer.pem()
    }

    /// Writes the CA's certificate to `path`.
    pub fn write_cert(&self, path: &Path) {
        write(path, &self.cert_pem());
    }

    /// Issues a server certificate for `127.0.0.1` and `localhost`, written to
    /// `dir/server.{crt,key}`.
    pub fn issue_server(&self, dir: &Path) -> PemPair {
        self.issue(dir, "server", ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// Issues a client certificate (for mutual TLS), written to `dir/client.{crt,key}`.
    pub fn issue_client(&self, dir: &Path) -> PemPair {
        self.issue(dir, "client", ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn issue(&self, dir: &Path, name: &str, usage: ExtendedKeyUsagePurpose) -> PemPair {
        let mut params = CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()])
            .expect("certificate names");
        params
            .distinguished_name
            .push(DnType::CommonName, format!("wasi-cache test {name}"));
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![usage];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().expect("generating a key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("signing a certificate");
        let pair = PemPair {
            cert: dir.join(format!("{name}.crt")),
            key: dir.join(format!("{name}.key")),
        };
        write(&pair.cert, &cert.pem());
        write(&pair.key, &key.serialize_pem());
        pair
    }
}

fn write(path: &Path, pem: &str) {
    std::fs::write(path, pem).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}
