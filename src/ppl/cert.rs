//! The client certificate as the policy sees it: what it needs, computed once per connection.

use sha2::{Digest, Sha256};
use x509_parser::extensions::GeneralName;
use x509_parser::pem::Pem;

/// A client certificate reduced to what `client_certificate` and `invalid_client_certificate`
/// look at. Build it once per TLS connection; matching is then comparisons only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientCertificate {
    /// A certificate was presented.
    pub presented: bool,
    /// It chains to a trusted CA (the TLS layer decided).
    pub valid: bool,
    /// SHA-256 of the DER certificate.
    pub fingerprint: [u8; 32],
    /// SHA-256 of the DER SubjectPublicKeyInfo.
    pub spki_hash: [u8; 32],
    pub san_email: Vec<String>,
    pub san_dns: Vec<String>,
    pub san_uri: Vec<String>,
}

impl ClientCertificate {
    /// No certificate presented.
    pub fn not_presented() -> ClientCertificate {
        ClientCertificate {
            presented: false,
            valid: false,
            fingerprint: [0; 32],
            spki_hash: [0; 32],
            san_email: Vec::new(),
            san_dns: Vec::new(),
            san_uri: Vec::new(),
        }
    }

    /// The leaf from PEM text (the first `CERTIFICATE` block; a chain may follow).
    pub fn from_pem(pem: &str, valid: bool) -> Result<ClientCertificate, String> {
        for block in Pem::iter_from_buffer(pem.as_bytes()) {
            let block = block.map_err(|e| format!("invalid PEM: {e}"))?;
            if block.label == "CERTIFICATE" {
                return ClientCertificate::from_der(&block.contents, valid);
            }
        }
        Err("no CERTIFICATE block in the PEM text".to_string())
    }

    /// The leaf from DER bytes.
    pub fn from_der(der: &[u8], valid: bool) -> Result<ClientCertificate, String> {
        let (rest, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| format!("invalid certificate: {e}"))?;
        if !rest.is_empty() {
            return Err("invalid certificate: trailing data after the DER encoding".to_string());
        }
        let mut out = ClientCertificate {
            presented: true,
            valid,
            fingerprint: Sha256::digest(der).into(),
            spki_hash: Sha256::digest(cert.tbs_certificate.subject_pki.raw).into(),
            san_email: Vec::new(),
            san_dns: Vec::new(),
            san_uri: Vec::new(),
        };
        let san = cert
            .subject_alternative_name()
            .map_err(|e| format!("invalid subjectAltName extension: {e}"))?;
        if let Some(san) = san {
            for name in &san.value.general_names {
                match name {
                    GeneralName::RFC822Name(s) => out.san_email.push(s.to_string()),
                    GeneralName::DNSName(s) => out.san_dns.push(s.to_string()),
                    GeneralName::URI(s) => out.san_uri.push(s.to_string()),
                    _ => {}
                }
            }
        }
        Ok(out)
    }

    /// A presented certificate that chains to a trusted CA.
    pub fn is_trusted(&self) -> bool {
        self.presented && self.valid
    }

    /// The fingerprint as 64 lowercase hex digits.
    pub fn fingerprint_hex(&self) -> String {
        hex::encode(self.fingerprint)
    }

    /// The SPKI hash as standard base64.
    pub fn spki_hash_base64(&self) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(self.spki_hash)
    }
}
