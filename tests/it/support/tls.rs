//! A throw-away certificate authority for one test: LDAPS for 389-ds, HTTPS
//! for nginx, trusted by Dex (`rootCA`), by reqwest and by Chromium.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};

/// The CA: its certificate and the key that signs leaf certificates.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A leaf certificate and its private key, PEM-encoded.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

impl TestCa {
    /// A new CA with a fresh P-256 key; `name` becomes its common name.
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.distinguished_name = dn(name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("CA key");
        let issuer = CertifiedIssuer::self_signed(params, key).expect("self-sign the CA");
        TestCa { issuer }
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> String {
        self.issuer.pem()
    }

    /// Writes the CA certificate to `dir/ca.pem` and returns the path.
    pub fn write_cert(&self, dir: &Path) -> PathBuf {
        let path = dir.join("ca.pem");
        std::fs::write(&path, self.cert_pem()).expect("write CA certificate");
        path
    }

    /// A server certificate for `dns_names` (wildcards allowed) and `ips`.
    pub fn issue(&self, dns_names: &[&str], ips: &[IpAddr]) -> Issued {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("leaf params");
        params.distinguished_name = dn(dns_names.first().copied().unwrap_or("localhost"));
        params.subject_alt_names = dns_names
            .iter()
            .map(|n| SanType::DnsName((*n).try_into().expect("valid DNS name")))
            .chain(ips.iter().map(|ip| SanType::IpAddress(*ip)))
            .collect();
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign leaf");
        Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

impl Issued {
    /// Writes `dir/<stem>.crt` and `dir/<stem>.key` (mode 0600) and returns
    /// both paths.
    pub fn write(&self, dir: &Path, stem: &str) -> (PathBuf, PathBuf) {
        use std::os::unix::fs::PermissionsExt;
        let cert = dir.join(format!("{stem}.crt"));
        let key = dir.join(format!("{stem}.key"));
        std::fs::write(&cert, &self.cert_pem).expect("write certificate");
        std::fs::write(&key, &self.key_pem).expect("write key");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))
            .expect("restrict key file");
        (cert, key)
    }
}

fn dn(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "authgate end-to-end tests");
    dn.push(DnType::CommonName, common_name);
    dn
}

/// An HTTPS client that trusts `ca_pem`, resolves each of `hosts` to
/// `addr` (the proxy under test), and does not follow redirects, so a test
/// sees every 302 itself.
pub fn https_client(
    ca_pem: &str,
    hosts: impl IntoIterator<Item = String>,
    addr: SocketAddr,
) -> openidconnect::reqwest::Client {
    https_client_builder(ca_pem, hosts, addr)
        .build()
        .expect("build HTTP client")
}

/// The builder of [`https_client`], for a client with more settings.
pub fn https_client_builder(
    ca_pem: &str,
    hosts: impl IntoIterator<Item = String>,
    addr: SocketAddr,
) -> openidconnect::reqwest::ClientBuilder {
    use openidconnect::reqwest;
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("CA PEM"));
    for host in hosts {
        builder = builder.resolve(&host, addr);
    }
    builder
}

/// Sends `GET <target> HTTP/1.0` exactly as given (see
/// [`super::raw_get`]) over TLS to `addr`, with SNI `sni`, trusting
/// `ca_pem`; returns the status (0: closed without an answer) and the body.
pub async fn raw_get_tls(
    ca_pem: &str,
    addr: std::net::SocketAddr,
    sni: &str,
    target: &str,
    host: &str,
    headers: &[String],
) -> (u16, String) {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject as _;
    use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};

    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).expect("CA PEM"))
        .expect("trust the test CA");
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect over TLS");
    let name = ServerName::try_from(sni.to_owned()).expect("SNI name");
    let tls = connector.connect(name, tcp).await.expect("TLS handshake");
    super::raw_get(tls, target, host, headers).await
}
