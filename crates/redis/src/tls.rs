//! TLS for `rediss://` URLs: the certificates a backend trusts and shows ([`RedisTls`]), their
//! checks before anything connects, and handshake failures phrased as what failed.
//!
//! redis-rs makes the connections with rustls. Without a CA certificate it trusts the system's
//! roots (rustls-native-certs: the OS store, `SSL_CERT_FILE`/`SSL_CERT_DIR` honoured); with one
//! it trusts that CA only.

use std::error::Error as StdError;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use redis::{ClientTlsConfig, TlsCertificates};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{AlertDescription, CertificateError, RootCertStore};
use wasi_cache_engine::{Error, Result};

/// The certificates of TLS connections (`rediss://` URLs), as PEM. The default trusts the
/// system's roots and shows no client certificate.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct RedisTls {
    /// CA certificates (PEM) trusted instead of the system's roots: for a server whose
    /// certificate a private CA signed.
    pub ca_cert: Option<Vec<u8>>,
    /// A certificate the backend shows the server (mutual TLS).
    pub client: Option<ClientIdentity>,
}

/// A client certificate and its private key, as PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    /// The certificate, then any intermediates (PEM).
    pub cert: Vec<u8>,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: Vec<u8>,
}

impl RedisTls {
    /// Reads a CA certificate file and a client certificate and key file pair, and checks they
    /// hold what they should; the error names the file and what is wrong with it.
    pub fn from_files(ca_cert: Option<&Path>, client: Option<(&Path, &Path)>) -> Result<Self> {
        let tls = Self {
            ca_cert: ca_cert.map(|path| read(path, Pem::CaCert)).transpose()?,
            client: client
                .map(|(cert, key)| -> Result<ClientIdentity> {
                    Ok(ClientIdentity {
                        cert: read(cert, Pem::ClientCert)?,
                        key: read(key, Pem::ClientKey)?,
                    })
                })
                .transpose()?,
        };
        tls.check()
            .map_err(|e| Error::InvalidConfig(format!("{e} ({})", names(ca_cert, client))))?;
        Ok(tls)
    }

    /// Whether these are the defaults (system roots, no client certificate).
    fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// Checks every PEM holds what it should, and that the client key is the certificate's.
    fn check(&self) -> std::result::Result<(), String> {
        if let Some(pem) = &self.ca_cert {
            let mut roots = RootCertStore::empty();
            for cert in Pem::CaCert.certificates(pem, None)? {
                roots
                    .add(cert)
                    .map_err(|e| format!("the CA certificate is not usable: {e}"))?;
            }
        }
        if let Some(client) = &self.client {
            let chain = Pem::ClientCert.certificates(&client.cert, None)?;
            let key = Pem::ClientKey.private_key(&client.key, None)?;
            rustls::sign::CertifiedKey::from_der(chain, key, &provider()).map_err(|e| {
                format!("the client key does not go with the client certificate: {e}")
            })?;
        }
        Ok(())
    }

    /// The certificates as redis-rs takes them.
    pub(crate) fn certificates(&self) -> TlsCertificates {
        TlsCertificates {
            client_tls: self.client.as_ref().map(|c| ClientTlsConfig {
                client_cert: c.cert.clone(),
                client_key: c.key.clone(),
            }),
            root_cert: self.ca_cert.clone(),
        }
    }
}

impl fmt::Debug for RedisTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisTls")
            .field("ca_cert", &self.ca_cert.as_ref().map(|_| "<PEM>"))
            .field(
                "client",
                &self.client.as_ref().map(|_| "<PEM, key redacted>"),
            )
            .finish()
    }
}

impl fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientIdentity(<redacted>)")
    }
}

/// What a PEM input must hold, named as in messages.
#[derive(Clone, Copy)]
enum Pem {
    CaCert,
    ClientCert,
    ClientKey,
}

impl Pem {
    /// What the input is, and the file it came from if any.
    fn name(self, file: Option<&Path>) -> String {
        let what = match self {
            Self::CaCert => "the CA certificate",
            Self::ClientCert => "the client certificate",
            Self::ClientKey => "the client key",
        };
        match file {
            Some(path) => format!("{what} {}", path.display()),
            None => what.to_owned(),
        }
    }

    /// The certificates in `pem` (read from `file`): at least one, each a well-formed block.
    fn certificates(
        self,
        pem: &[u8],
        file: Option<&Path>,
    ) -> std::result::Result<Vec<CertificateDer<'static>>, String> {
        let certs = CertificateDer::pem_slice_iter(pem)
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| format!("{} is not valid PEM: {e}", self.name(file)))?;
        if certs.is_empty() {
            return Err(format!(
                "{} holds no PEM certificate (no `-----BEGIN CERTIFICATE-----` block)",
                self.name(file)
            ));
        }
        Ok(certs)
    }

    /// The private key in `pem` (read from `file`).
    fn private_key(
        self,
        pem: &[u8],
        file: Option<&Path>,
    ) -> std::result::Result<PrivateKeyDer<'static>, String> {
        PrivateKeyDer::from_pem_slice(pem).map_err(|e| {
            format!(
                "{} is not a PEM private key (a `-----BEGIN PRIVATE KEY-----`, RSA or EC \
                 block): {e}",
                self.name(file)
            )
        })
    }
}

/// The contents of `path`, checked to hold `what`.
fn read(path: &Path, what: Pem) -> Result<Vec<u8>> {
    let pem = std::fs::read(path)
        .map_err(|e| Error::InvalidConfig(format!("cannot read {}: {e}", what.name(Some(path)))))?;
    let checked = match what {
        Pem::CaCert | Pem::ClientCert => what.certificates(&pem, Some(path)).map(drop),
        Pem::ClientKey => what.private_key(&pem, Some(path)).map(drop),
    };
    checked.map_err(Error::InvalidConfig)?;
    Ok(pem)
}

/// The files behind a check's message.
fn names(ca_cert: Option<&Path>, client: Option<(&Path, &Path)>) -> String {
    ca_cert
        .into_iter()
        .chain(client.into_iter().flat_map(|(cert, key)| [cert, key]))
        .map(|path| path.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The rustls crypto provider: the process default, else ring (installed as the default, since
/// redis-rs builds its TLS configurations on the default).
fn provider() -> Arc<CryptoProvider> {
    if let Some(provider) = CryptoProvider::get_default() {
        return provider.clone();
    }
    // Losing a race with another installer is fine: either way a default is in place.
    let _ = rustls::crypto::ring::default_provider().install_default();
    CryptoProvider::get_default()
        .expect("a rustls crypto provider was just installed")
        .clone()
}

/// Whether `addr` connects with TLS, after refusing what the backend does not support: a
/// `rediss://` URL without certificate verification, or certificates for a plain `redis://`
/// URL (refused rather than silently connecting in the clear). With TLS, the certificates are
/// checked and the crypto provider installed.
pub(crate) fn secure(addr: &redis::ConnectionAddr, tls: &RedisTls) -> Result<bool> {
    let (secure, insecure) = match addr {
        redis::ConnectionAddr::TcpTls { insecure, .. } => (true, *insecure),
        _ => (false, false),
    };
    if insecure {
        return Err(Error::InvalidConfig(
            "a rediss:// URL with `#insecure` (no certificate verification) is not supported; \
             trust the server's CA instead"
                .into(),
        ));
    }
    if !secure && !tls.is_default() {
        return Err(Error::InvalidConfig(
            "a CA or client certificate was given for a plain redis:// URL; use a rediss:// \
             URL to connect with TLS"
                .into(),
        ));
    }
    if secure {
        provider();
        tls.check().map_err(Error::InvalidConfig)?;
    }
    Ok(secure)
}

/// The redis-rs client for `info`: TLS with `tls` for a `rediss://` URL.
pub(crate) fn build_client(info: redis::ConnectionInfo, tls: &RedisTls) -> Result<redis::Client> {
    let invalid = |e: redis::RedisError| Error::InvalidConfig(format!("Redis TLS settings: {e}"));
    if secure(info.addr(), tls)? {
        redis::Client::build_with_tls(info, tls.certificates()).map_err(invalid)
    } else {
        redis::Client::open(info).map_err(invalid)
    }
}

/// What failed, when `e` is a failed TLS handshake (or a server's refusal right after it).
pub(crate) fn handshake_failure(e: &redis::RedisError) -> Option<String> {
    let failure = rustls_error(e)?;
    let what = match failure {
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
            "certificate verify failed: the server's certificate is signed by an unknown CA \
             (trust the CA that signed it: a CA certificate, or the system's roots)"
                .to_owned()
        }
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => "certificate verify failed: the server's certificate is not valid for the host \
              name in the URL"
            .to_owned(),
        rustls::Error::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        ) => "certificate verify failed: the server's certificate has expired".to_owned(),
        rustls::Error::InvalidCertificate(other) => {
            format!("certificate verify failed: the server's certificate is invalid ({other:?})")
        }
        rustls::Error::AlertReceived(AlertDescription::CertificateRequired) => {
            "the server requires a client certificate (mutual TLS): give a client certificate \
             and key signed by a CA the server trusts"
                .to_owned()
        }
        rustls::Error::AlertReceived(
            alert @ (AlertDescription::UnknownCA
            | AlertDescription::BadCertificate
            | AlertDescription::CertificateUnknown
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::CertificateExpired
            | AlertDescription::CertificateRevoked
            | AlertDescription::AccessDenied),
        ) => format!(
            "the server refused the client certificate ({alert:?}): give one signed by a CA \
             the server trusts"
        ),
        rustls::Error::AlertReceived(alert) => {
            format!("the server refused the handshake ({alert:?})")
        }
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => {
            "the server does not speak TLS on this port (a plain redis:// server?)".to_owned()
        }
        other => other.to_string(),
    };
    Some(format!("TLS handshake with Redis failed: {what}"))
}

/// The rustls error somewhere in `e`'s chain. redis-rs keeps the I/O error behind an `Arc`, and
/// an I/O error's `source` skips the error it wraps, so both are looked into.
fn rustls_error(e: &redis::RedisError) -> Option<&rustls::Error> {
    let mut next: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = next {
        if let Some(found) = err.downcast_ref::<rustls::Error>() {
            return Some(found);
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && let Some(found) = io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>())
        {
            return Some(found);
        }
        next = match err.downcast_ref::<Arc<dyn StdError + Send + Sync>>() {
            Some(shared) => Some(&**shared),
            None => err.source(),
        };
    }
    None
}
