//! Certificates for end-to-end tests over TLS, made with rcgen: CAs and
//! leaf certificates signed by them.

use attestd_client::core::ids::Digest;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};

/// A CA that signs leaf certificates.
pub(crate) struct Ca {
    pub issuer: Issuer<'static, KeyPair>,
    /// Its own certificate (PEM).
    pub pem: String,
}

pub(crate) fn ca(name: &str) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let cert = params.self_signed(&key).unwrap();
    Ca {
        issuer: Issuer::new(params, key),
        pem: cert.pem(),
    }
}

/// A leaf certificate for DNS names or IP addresses `names` and SAN URIs
/// `uris`: (chain PEM, key PEM, SHA-256 of its DER).
pub(crate) fn leaf(ca: &Ca, names: &[&str], uris: &[&str]) -> (Vec<u8>, Vec<u8>, Digest) {
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    for u in uris {
        params
            .subject_alt_names
            .push(SanType::URI((*u).try_into().unwrap()));
    }
    params.distinguished_name.push(
        DnType::CommonName,
        names.first().copied().unwrap_or("client"),
    );
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    (
        cert.pem().into_bytes(),
        key.serialize_pem().into_bytes(),
        Digest::of(cert.der().as_ref()),
    )
}
