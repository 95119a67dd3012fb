//! TLS certificates: parsing PEM, loading a certificate with its key (once, when the
//! configuration is read), indexing them by the names they cover, choosing one by SNI during the
//! handshake, and the self-signed fallback. A leaf: it depends on nothing else of Portcullis.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("invalid certificate PEM: {0}")]
    CertPem(#[source] std::io::Error),
    #[error("no certificate in the PEM")]
    NoCert,
    #[error("invalid private key PEM: {0}")]
    KeyPem(#[source] std::io::Error),
    #[error("no private key in the PEM")]
    NoKey,
    #[error("unsupported private key: {0}")]
    Key(#[source] rustls::Error),
    #[error("unsupported private key encoding: {0}")]
    KeyDer(String),
    #[error("cannot trust this CA for client certificates: {0}")]
    Ca(String),
    #[error("the private key does not belong to the certificate")]
    Mismatch,
    #[error("cannot read the certificate: {0}")]
    Parse(#[source] x509_parser::error::X509Error),
    #[error("cannot generate a certificate: {0}")]
    Generate(#[source] rcgen::Error),
    #[error("certificate {0} cannot be read: {1}")]
    Unreadable(usize, String),
}

/// The CA certificates (DER) of a PEM text to verify upstreams with: at least one, and each
/// one readable by the parser Pingora uses for them (which would otherwise fail at the first
/// request).
pub fn parse_ca_certificates(pem: &str) -> Result<Vec<Vec<u8>>, CertError> {
    use x509_parser_pingora::prelude::{FromDer, X509Certificate};
    let ders = parse_cert_chain(pem)?;
    if ders.is_empty() {
        return Err(CertError::NoCert);
    }
    for (i, der) in ders.iter().enumerate() {
        X509Certificate::from_der(der).map_err(|e| CertError::Unreadable(i + 1, e.to_string()))?;
    }
    Ok(ders)
}

/// Every certificate in a PEM text, as DER.
pub fn parse_cert_chain(pem: &str) -> Result<Vec<Vec<u8>>, CertError> {
    let mut reader = std::io::BufReader::new(pem.as_bytes());
    rustls_pemfile::certs(&mut reader)
        .map(|c| c.map(|c| c.to_vec()).map_err(CertError::CertPem))
        .collect()
}

/// A loaded certificate: the key rustls signs with, the DNS names it covers, and a digest of
/// the PEM it came from (two loads of the same PEM compare equal).
#[derive(Clone)]
pub struct LoadedCert {
    pub key: Arc<CertifiedKey>,
    pub names: Vec<String>,
    digest: [u8; 32],
}

impl PartialEq for LoadedCert {
    fn eq(&self, other: &Self) -> bool {
        self.digest == other.digest
    }
}

impl fmt::Debug for LoadedCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedCert")
            .field("names", &self.names)
            .finish()
    }
}

/// Load a certificate chain and its key, check that they belong together, and list the names.
pub fn load_pem(cert_pem: &str, key_pem: &str) -> Result<LoadedCert, CertError> {
    let chain: Vec<CertificateDer<'static>> = parse_cert_chain(cert_pem)?
        .into_iter()
        .map(CertificateDer::from)
        .collect();
    if chain.is_empty() {
        return Err(CertError::NoCert);
    }
    let mut reader = std::io::BufReader::new(key_pem.as_bytes());
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut reader)
        .map_err(CertError::KeyPem)?
        .ok_or(CertError::NoKey)?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&key).map_err(CertError::Key)?;
    let certified = CertifiedKey::new(chain.clone(), signing);
    match certified.keys_match() {
        Ok(()) => {}
        Err(rustls::Error::InconsistentKeys(_)) => return Err(CertError::Mismatch),
        // Unknown means rustls could not tell (e.g. an unusual key type): accept.
        Err(_) => {}
    }
    let names = dns_names(&chain[0])?;
    let mut digest = Sha256::new();
    digest.update(cert_pem.as_bytes());
    digest.update([0]);
    digest.update(key_pem.as_bytes());
    Ok(LoadedCert {
        key: Arc::new(certified),
        names,
        digest: digest.finalize().into(),
    })
}

/// A client certificate for mutual TLS towards an upstream: the chain and its key as DER,
/// checked to belong together when loaded. The key never prints.
#[derive(Clone)]
pub struct ClientCert {
    pub chain: Vec<Vec<u8>>,
    key: Vec<u8>,
    digest: [u8; 32],
}

impl ClientCert {
    /// The private key, DER (PKCS#8, SEC1 or PKCS#1).
    pub fn key_der(&self) -> &[u8] {
        &self.key
    }

    /// A digest of chain and key, e.g. to keep connections of different identities apart.
    pub fn digest(&self) -> [u8; 32] {
        self.digest
    }
}

impl PartialEq for ClientCert {
    fn eq(&self, other: &Self) -> bool {
        self.digest == other.digest
    }
}

impl fmt::Debug for ClientCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCert")
            .field("chain", &self.chain.len())
            .finish_non_exhaustive()
    }
}

/// Load a client certificate chain and its key (PEM), checked as [`load_pem`] checks a server
/// certificate.
pub fn load_client_cert(cert_pem: &str, key_pem: &str) -> Result<ClientCert, CertError> {
    load_pem(cert_pem, key_pem)?;
    let chain = parse_cert_chain(cert_pem)?;
    let mut reader = std::io::BufReader::new(key_pem.as_bytes());
    let key = rustls_pemfile::private_key(&mut reader)
        .map_err(CertError::KeyPem)?
        .ok_or(CertError::NoKey)?;
    let key = key.secret_der().to_vec();
    // The data plane reads the key back from bare DER: make sure it can.
    PrivateKeyDer::try_from(key.clone()).map_err(|e| CertError::KeyDer(e.to_string()))?;
    let mut digest = Sha256::new();
    for der in &chain {
        digest.update(der);
    }
    digest.update([0]);
    digest.update(&key);
    Ok(ClientCert {
        chain,
        key,
        digest: digest.finalize().into(),
    })
}

fn dns_names(der: &CertificateDer<'_>) -> Result<Vec<String>, CertError> {
    use x509_parser::prelude::*;
    let (_, cert) = X509Certificate::from_der(der.as_ref()).map_err(|e| {
        CertError::Parse(match e {
            x509_parser::nom::Err::Error(e) | x509_parser::nom::Err::Failure(e) => e,
            x509_parser::nom::Err::Incomplete(_) => X509Error::InvalidCertificate,
        })
    })?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::DNSName(n) = name {
                names.push(n.to_ascii_lowercase());
            }
        }
    }
    if names.is_empty() {
        for cn in cert.subject().iter_common_name() {
            if let Ok(s) = cn.as_str() {
                names.push(s.to_ascii_lowercase());
            }
        }
    }
    Ok(names)
}

/// A self-signed certificate for when nothing else matches (clients will warn, and so do we).
pub fn self_signed(names: &[String]) -> Result<LoadedCert, CertError> {
    let mut names: Vec<String> = names.to_vec();
    if names.is_empty() {
        names.push("portcullis.invalid".to_string());
    }
    let ck = rcgen::generate_simple_self_signed(names).map_err(CertError::Generate)?;
    load_pem(&ck.cert.pem(), &ck.signing_key.serialize_pem())
}

/// Certificates by the names they cover.
#[derive(Debug, Clone)]
pub struct CertIndex {
    exact: HashMap<String, Arc<CertifiedKey>>,
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
    /// True when `default` is our generated self-signed certificate.
    pub default_is_generated: bool,
}

impl CertIndex {
    /// Index `certs`; the first one given for a name wins. `fallback` serves names nothing covers.
    pub fn new(certs: &[LoadedCert], fallback: &LoadedCert, fallback_generated: bool) -> CertIndex {
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        for c in certs {
            for name in &c.names {
                match name.strip_prefix("*.") {
                    Some(suffix) => {
                        wildcard
                            .entry(suffix.to_string())
                            .or_insert_with(|| c.key.clone());
                    }
                    None => {
                        exact.entry(name.clone()).or_insert_with(|| c.key.clone());
                    }
                }
            }
        }
        CertIndex {
            exact,
            wildcard,
            default: fallback.key.clone(),
            default_is_generated: fallback_generated,
        }
    }

    /// The certificate for a server name, falling back to the default.
    pub fn lookup(&self, server_name: Option<&str>) -> Arc<CertifiedKey> {
        if let Some(name) = server_name {
            let name = name.to_ascii_lowercase();
            if let Some(k) = self.exact.get(&name) {
                return k.clone();
            }
            if let Some((_, rest)) = name.split_once('.')
                && let Some(k) = self.wildcard.get(rest)
            {
                return k.clone();
            }
        }
        self.default.clone()
    }

    /// Whether some certificate other than the default covers the name.
    pub fn covers(&self, name: &str) -> bool {
        let name = name.to_ascii_lowercase();
        self.exact.contains_key(&name)
            || name
                .split_once('.')
                .is_some_and(|(_, rest)| self.wildcard.contains_key(rest))
    }
}

/// The rustls resolver: reads the current index on every handshake, so a swap takes effect on
/// the next connection.
#[derive(Debug)]
pub struct SniResolver {
    pub index: Arc<ArcSwap<CertIndex>>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.index.load().lookup(hello.server_name()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_for(names: &[&str]) -> LoadedCert {
        self_signed(&names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn ca_certificates_must_be_readable_by_the_proxy() {
        let ca = rcgen::generate_simple_self_signed(vec!["ca.test".to_string()]).unwrap();
        assert_eq!(parse_ca_certificates(&ca.cert.pem()).unwrap().len(), 1);
        assert!(matches!(parse_ca_certificates(""), Err(CertError::NoCert)));
        // Well-formed PEM around bytes that are no certificate.
        let junk = "-----BEGIN CERTIFICATE-----\nAAECAwQFBgcICQ==\n-----END CERTIFICATE-----\n";
        assert!(matches!(
            parse_ca_certificates(junk),
            Err(CertError::Unreadable(1, _))
        ));
    }

    #[test]
    fn lookup_prefers_exact_then_wildcard_then_default() {
        let a = cert_for(&["a.example.com"]);
        let w = cert_for(&["*.example.com"]);
        let d = cert_for(&["default.invalid"]);
        let idx = CertIndex::new(&[a.clone(), w.clone()], &d, true);
        assert!(Arc::ptr_eq(&idx.lookup(Some("a.example.com")), &a.key));
        assert!(Arc::ptr_eq(&idx.lookup(Some("B.example.com")), &w.key));
        assert!(Arc::ptr_eq(&idx.lookup(Some("x.b.example.com")), &d.key));
        assert!(Arc::ptr_eq(&idx.lookup(None), &d.key));
        assert!(idx.covers("z.example.com"));
        assert!(!idx.covers("example.com"));
    }

    #[test]
    fn mismatched_key_is_rejected() {
        let a = rcgen::generate_simple_self_signed(vec!["a.test".to_string()]).unwrap();
        let b = rcgen::generate_simple_self_signed(vec!["b.test".to_string()]).unwrap();
        let err = load_pem(&a.cert.pem(), &b.signing_key.serialize_pem()).unwrap_err();
        assert!(matches!(err, CertError::Mismatch), "{err}");
        assert!(matches!(
            load_pem("garbage", "garbage"),
            Err(CertError::NoCert)
        ));
    }
}

/// Asks clients for a certificate while some route verifies them, accepts any chain at the
/// handshake (the client still proves it holds the key), and leaves the verdict to the route:
/// each route trusts its own CAs ([`client_ca_verifier`]), which the handshake cannot know
/// before the request names a host and path. Never mandatory: routes without client
/// certificates keep working for every client.
#[derive(Debug)]
pub struct RequestClientCerts {
    /// Whether any route verifies client certificates now (set by the route sink).
    pub wanted: Arc<std::sync::atomic::AtomicBool>,
    /// Whether a connection without a certificate is refused (set by the route sink).
    pub required: Arc<std::sync::atomic::AtomicBool>,
    algorithms: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl RequestClientCerts {
    pub fn new(
        wanted: Arc<std::sync::atomic::AtomicBool>,
        required: Arc<std::sync::atomic::AtomicBool>,
    ) -> RequestClientCerts {
        RequestClientCerts {
            wanted,
            required,
            algorithms: rustls::crypto::ring::default_provider().signature_verification_algorithms,
        }
    }
}

impl rustls::server::danger::ClientCertVerifier for RequestClientCerts {
    fn offer_client_auth(&self) -> bool {
        self.wanted.load(std::sync::atomic::Ordering::Acquire)
    }

    fn client_auth_mandatory(&self) -> bool {
        self.required.load(std::sync::atomic::Ordering::Acquire)
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        // Chains are verified per route, against that route's CAs, before any policy runs.
        Ok(rustls::server::danger::ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The certificate chain a client presented (leaf first), kept with its connection; cheap to
/// clone (each request of the connection takes one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerChain(pub Arc<[CertificateDer<'static>]>);

/// A route's downstream client CAs, ready to verify chains.
pub type ClientCaVerifier = Arc<dyn rustls::server::danger::ClientCertVerifier>;

/// A verifier of client chains against `cas` (DER), or why it cannot be built.
pub fn client_ca_verifier(cas: &[Vec<u8>]) -> Result<ClientCaVerifier, CertError> {
    let mut roots = rustls::RootCertStore::empty();
    for der in cas {
        roots
            .add(CertificateDer::from(der.clone()))
            .map_err(|e| CertError::Ca(e.to_string()))?;
    }
    rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .build()
    .map_err(|e| CertError::Ca(e.to_string()))
}

/// Whether `chain` (leaf first) chains to the CAs of `verifier`, now.
pub fn chain_is_trusted(verifier: &ClientCaVerifier, chain: &[CertificateDer<'static>]) -> bool {
    let Some((leaf, intermediates)) = chain.split_first() else {
        return false;
    };
    verifier
        .verify_client_cert(leaf, intermediates, rustls::pki_types::UnixTime::now())
        .is_ok()
}
