//! SIP over TLS (issue 14, RFC 3261 §26): the rustls configurations of one side, built from
//! `[pbx.tls]` / `[agents.tls]`, and the reasons a handshake failed.
//!
//! A side with `transport = "tls"` gets a [`TlsSide`]: the server configuration its listener
//! accepts with (callmask's certificate; client certificates verified against
//! `tls.client_ca_file` when set, and then required) and the client configuration its outbound
//! connections to the peer use (the peer's certificate verified against `tls.ca_file` and, with
//! `tls.system_roots`, the bundled Mozilla roots; SNI = `tls.server_name`, else the peer's IP is
//! verified and no SNI is sent; callmask's certificate offered as client certificate).
//!
//! Certificate reload: [`TlsSide::reload`] re-reads every file of the side (and
//! [`TlsSide::reload_with`] takes a reloaded `[<side>.tls]`) and swaps the configurations in
//! one step; connections already up keep theirs, new handshakes use the new ones. A reload
//! that fails (a file missing, a key not matching) keeps the old ones. callmask has no SIGHUP
//! handler on this branch: whoever adds one calls `reload_with` on each side's `TlsSide`
//! (`run` holds them) and treats `<side>.transport` as a key that needs a restart.
//!
//! Nothing secret is logged: errors name the config key and file, never key material.
#![allow(clippy::disallowed_methods)] // io shell

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{CertificateError, ClientConfig, RootCertStore, ServerConfig};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::run::RunError;
use crate::core::proxy::Side;
use crate::metrics::TlsFailure;

/// The TLS settings of one side, reloadable.
#[derive(Debug)]
pub struct TlsSide {
    side: Side,
    current: RwLock<Built>,
}

#[derive(Debug, Clone)]
struct Built {
    /// The settings it was built from.
    cfg: config::TlsConfig,
    server: Arc<ServerConfig>,
    /// `None`: nothing to verify a peer's certificate against (no `ca_file`, no system
    /// roots; registration mode): outbound TLS connections are refused.
    client: Option<Arc<ClientConfig>>,
}

/// The config key `name` of `side`'s `[tls]` table.
fn key(side: Side, name: &str) -> &'static str {
    match (side, name) {
        (Side::Pbx, "cert_file") => "pbx.tls.cert_file",
        (Side::Pbx, "key_file") => "pbx.tls.key_file",
        (Side::Pbx, "client_ca_file") => "pbx.tls.client_ca_file",
        (Side::Pbx, "ca_file") => "pbx.tls.ca_file",
        (Side::Pbx, _) => "pbx.tls",
        (Side::Agents, "cert_file") => "agents.tls.cert_file",
        (Side::Agents, "key_file") => "agents.tls.key_file",
        (Side::Agents, "client_ca_file") => "agents.tls.client_ca_file",
        (Side::Agents, "ca_file") => "agents.tls.ca_file",
        (Side::Agents, _) => "agents.tls",
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs(side: Side, name: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, RunError> {
    let k = key(side, name);
    let bad = |problem: String| RunError::Config { key: k, problem };
    let list = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            bad(format!(
                "cannot read certificates from {}: {e} — point {k} at a PEM file of certificates",
                path.display()
            ))
        })?;
    if list.is_empty() {
        return Err(bad(format!(
            "{} holds no certificate — point {k} at a PEM file with -----BEGIN CERTIFICATE----- blocks",
            path.display()
        )));
    }
    Ok(list)
}

fn roots(side: Side, name: &str, path: &Path) -> Result<RootCertStore, RunError> {
    let mut store = RootCertStore::empty();
    for c in certs(side, name, path)? {
        store.add(c).map_err(|e| RunError::Config {
            key: key(side, name),
            problem: format!(
                "{} holds a certificate that cannot be a trust anchor: {e} — list CA certificates only",
                path.display()
            ),
        })?;
    }
    Ok(store)
}

/// callmask's certificate and key, checked to belong together.
fn certified_key(
    side: Side,
    cfg: &config::TlsConfig,
    provider: &CryptoProvider,
) -> Result<Arc<rustls::sign::CertifiedKey>, RunError> {
    let chain = certs(side, "cert_file", &cfg.cert_file)?;
    let kk = key(side, "key_file");
    let der = PrivateKeyDer::from_pem_file(&cfg.key_file).map_err(|e| RunError::Config {
        key: kk,
        problem: format!(
            "cannot read a private key from {}: {e} — point {kk} at the PEM key (PKCS#8, PKCS#1 or SEC1) of {}",
            cfg.key_file.display(),
            key(side, "cert_file")
        ),
    })?;
    let ck = rustls::sign::CertifiedKey::from_der(chain, der, provider).map_err(|e| {
        let problem = match e {
            rustls::Error::InconsistentKeys(_) => format!(
                "the key in {} does not match the certificate in {} — point {kk} and {} at the same pair \
                 (compare `openssl x509 -noout -pubkey -in CERT` with `openssl pkey -pubout -in KEY`)",
                cfg.key_file.display(),
                cfg.cert_file.display(),
                key(side, "cert_file")
            ),
            other => format!(
                "cannot use the key in {} with the certificate in {}: {other}",
                cfg.key_file.display(),
                cfg.cert_file.display()
            ),
        };
        RunError::Config { key: kk, problem }
    })?;
    Ok(Arc::new(ck))
}

fn build(side: Side, cfg: &config::TlsConfig) -> Result<Built, RunError> {
    let provider = provider();
    let ck = certified_key(side, cfg, &provider)?;
    let versions = |e: rustls::Error| RunError::Config {
        key: key(side, "cert_file"),
        problem: format!("TLS set-up failed: {e}"),
    };
    let server = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(versions)?;
    let server = match &cfg.client_ca_file {
        Some(p) => {
            let store = Arc::new(roots(side, "client_ca_file", p)?);
            let verifier = WebPkiClientVerifier::builder_with_provider(store, provider.clone())
                .build()
                .map_err(|e| RunError::Config {
                    key: key(side, "client_ca_file"),
                    problem: format!("cannot verify clients against {}: {e}", p.display()),
                })?;
            server.with_client_cert_verifier(verifier)
        }
        None => server.with_no_client_auth(),
    };
    let server = server.with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(
        Arc::clone(&ck),
    )));
    let mut store = RootCertStore::empty();
    if let Some(p) = &cfg.ca_file {
        store = roots(side, "ca_file", p)?;
    }
    if cfg.system_roots {
        store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    let client = if store.is_empty() {
        None
    } else {
        let c = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(versions)?
            .with_root_certificates(store)
            .with_client_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(ck)));
        Some(Arc::new(c))
    };
    Ok(Built {
        cfg: cfg.clone(),
        server: Arc::new(server),
        client,
    })
}

impl TlsSide {
    /// Read and check every file of `cfg`; errors name the key and the fix.
    pub fn new(side: Side, cfg: &config::TlsConfig) -> Result<Self, RunError> {
        let built = build(side, cfg)?;
        Ok(TlsSide {
            side,
            current: RwLock::new(built),
        })
    }

    /// Re-read the side's certificate, key and CA files (certificate rotation). On error the
    /// configuration in use stays; connections already up are never touched.
    pub fn reload(&self) -> Result<(), RunError> {
        let Some(cfg) = self.built().map(|b| b.cfg) else {
            return Ok(());
        };
        self.reload_with(&cfg)
    }

    /// As [`TlsSide::reload`], with `[<side>.tls]` as a configuration reload loaded it (its
    /// files may have moved, a CA may have been added or removed).
    pub fn reload_with(&self, cfg: &config::TlsConfig) -> Result<(), RunError> {
        let built = build(self.side, cfg)?;
        if let Ok(mut cur) = self.current.write() {
            *cur = built;
        }
        Ok(())
    }

    fn built(&self) -> Option<Built> {
        self.current.read().ok().map(|b| b.clone())
    }

    /// The acceptor for the next inbound connection.
    pub fn acceptor(&self) -> Option<TlsAcceptor> {
        self.built().map(|b| TlsAcceptor::from(b.server))
    }

    /// The connector toward `peer` and the name its certificate must hold, or `None` when
    /// nothing is configured to verify it (`tls.ca_file`, `tls.system_roots`).
    pub fn connector(&self, peer: SocketAddr) -> Option<(TlsConnector, ServerName<'static>)> {
        let built = self.built()?;
        let client = built.client?;
        let name = match &built.cfg.server_name {
            Some(n) => ServerName::try_from(n.clone()).ok()?,
            None => ServerName::IpAddress(peer.ip().into()),
        };
        Some((TlsConnector::from(client), name))
    }
}

/// A client configuration toward a recording server (`[[recorder]] kind = "siprec"` with a
/// TLS SRS): its certificate must chain to `ca_file`; `cert_key`, a client certificate and
/// its key to present. The error names the file and what is wrong with it.
pub(crate) fn srs_client_config(
    ca_file: &Path,
    cert_key: Option<(&Path, &Path)>,
) -> Result<Arc<ClientConfig>, String> {
    let provider = provider();
    let mut store = RootCertStore::empty();
    let cas = CertificateDer::pem_file_iter(ca_file)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("tls_ca_file {}: {e}", ca_file.display()))?;
    for c in cas {
        store
            .add(c)
            .map_err(|e| format!("tls_ca_file {}: {e}", ca_file.display()))?;
    }
    if store.is_empty() {
        return Err(format!(
            "tls_ca_file {} holds no certificate",
            ca_file.display()
        ));
    }
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS set-up failed: {e}"))?
        .with_root_certificates(store);
    let config = match cert_key {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("tls_cert_file {}: {e}", cert.display()))?;
            let der = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| format!("tls_key_file {}: {e}", key.display()))?;
            let ck = rustls::sign::CertifiedKey::from_der(chain, der, &provider).map_err(|e| {
                format!(
                    "tls_key_file {} and tls_cert_file {}: {e}",
                    key.display(),
                    cert.display()
                )
            })?;
            builder.with_client_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(
                Arc::new(ck),
            )))
        }
    };
    Ok(Arc::new(config))
}

/// Whether `cert` (a client's verified end-entity certificate) names `ip` (an IP address
/// SAN): the RFC 5923 §9 condition for reusing its connection for that address.
pub fn certificate_names_ip(cert: &CertificateDer<'_>, ip: std::net::IpAddr) -> bool {
    rustls::server::ParsedCertificate::try_from(cert).is_ok_and(|parsed| {
        rustls::client::verify_server_name(&parsed, &ServerName::IpAddress(ip.into())).is_ok()
    })
}

/// Why a handshake failed, from the error tokio-rustls returned.
pub fn classify(e: &io::Error) -> TlsFailure {
    let Some(tls) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    else {
        return match e.kind() {
            io::ErrorKind::TimedOut => TlsFailure::Timeout,
            io::ErrorKind::InvalidData => TlsFailure::Protocol,
            _ => TlsFailure::Io,
        };
    };
    match tls {
        rustls::Error::NoCertificatesPresented => TlsFailure::NoCertificate,
        rustls::Error::InvalidCertificate(c) => match c {
            CertificateError::UnknownIssuer => TlsFailure::UnknownCa,
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. } => TlsFailure::Expired,
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                TlsFailure::NameMismatch
            }
            _ => TlsFailure::BadCertificate,
        },
        rustls::Error::AlertReceived(_) => TlsFailure::PeerAlert,
        _ => TlsFailure::Protocol,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_classified_without_their_text() {
        let wrap = |e: rustls::Error| io::Error::new(io::ErrorKind::InvalidData, e);
        assert_eq!(
            classify(&wrap(rustls::Error::NoCertificatesPresented)),
            TlsFailure::NoCertificate
        );
        assert_eq!(
            classify(&wrap(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer
            ))),
            TlsFailure::UnknownCa
        );
        assert_eq!(
            classify(&wrap(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName
            ))),
            TlsFailure::NameMismatch
        );
        assert_eq!(
            classify(&wrap(rustls::Error::AlertReceived(
                rustls::AlertDescription::BadCertificate
            ))),
            TlsFailure::PeerAlert
        );
        assert_eq!(
            classify(&io::Error::from(io::ErrorKind::UnexpectedEof)),
            TlsFailure::Io
        );
        assert_eq!(
            classify(&io::Error::from(io::ErrorKind::TimedOut)),
            TlsFailure::Timeout
        );
    }

    /// `openssl` with `args` in `dir`; `false` when openssl is not installed (the caller then
    /// fails unless `CALLMASK_ALLOW_SKIP=1`).
    fn openssl(dir: &Path, args: &[&str]) -> bool {
        match std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
        {
            Ok(o) => {
                assert!(
                    o.status.success(),
                    "openssl {args:?}: {}",
                    String::from_utf8_lossy(&o.stderr)
                );
                true
            }
            Err(_) => false,
        }
    }

    /// A CA and two leaf pairs `a` and `b` it signed (SAN IP:127.0.0.1), in a fresh folder.
    fn ca_and_two_leaves() -> Option<std::path::PathBuf> {
        let dir = std::env::temp_dir().join(format!(
            "callmask-sip-tls-{}-{:x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).ok()?;
        let ec = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";
        let ca = format!("req -x509 {ec} -keyout ca.key -out ca.pem -days 2 -subj /CN=ca");
        if !openssl(&dir, &ca.split(' ').collect::<Vec<_>>()) {
            let why = "openssl is not installed (needed to make test certificates)";
            if std::env::var("CALLMASK_ALLOW_SKIP").as_deref() == Ok("1") {
                eprintln!("SKIP: {why}");
                return None;
            }
            panic!("{why} (set CALLMASK_ALLOW_SKIP=1 to skip)");
        }
        let ext = "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
                   extendedKeyUsage=serverAuth,clientAuth\n";
        std::fs::write(dir.join("leaf.ext"), ext).ok()?;
        for n in ["a", "b"] {
            let req = format!("req {ec} -keyout {n}.key -out {n}.csr -subj /CN={n}");
            openssl(&dir, &req.split(' ').collect::<Vec<_>>());
            let sign = format!(
                "x509 -req -in {n}.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out {n}.pem \
                 -days 2 -extfile leaf.ext"
            );
            openssl(&dir, &sign.split_whitespace().collect::<Vec<_>>());
        }
        Some(dir)
    }

    /// The end-entity certificate a client sees when it handshakes with `side`'s acceptor
    /// (both ends in memory).
    async fn served_cert(side: &TlsSide) -> CertificateDer<'static> {
        let (srv, cli) = tokio::io::duplex(64 * 1024);
        let acceptor = side.acceptor().expect("acceptor");
        let peer: SocketAddr = "127.0.0.1:5061".parse().expect("addr");
        let (connector, name) = side.connector(peer).expect("connector (ca_file set)");
        let (s, c) = tokio::join!(acceptor.accept(srv), connector.connect(name, cli));
        s.expect("server handshake");
        let c = c.expect("client handshake");
        c.get_ref().1.peer_certificates().expect("certificates")[0].clone()
    }

    fn first_cert(path: &Path) -> CertificateDer<'static> {
        CertificateDer::pem_file_iter(path)
            .expect("pem")
            .next()
            .expect("a certificate")
            .expect("parses")
    }

    /// A key that does not match its certificate is refused at start, naming
    /// `<side>.tls.key_file`; `reload` swaps in new files for new handshakes and keeps the
    /// old configuration when the new files are inconsistent.
    #[tokio::test]
    async fn key_mismatch_is_refused_and_reload_swaps_certificates() {
        let Some(dir) = ca_and_two_leaves() else {
            return;
        };
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        let cfg = config::TlsConfig {
            cert_file: cert.clone(),
            key_file: key.clone(),
            client_ca_file: None,
            ca_file: Some(dir.join("ca.pem")),
            system_roots: false,
            server_name: None,
        };
        let copy = |from: &str, to: &Path| std::fs::copy(dir.join(from), to).expect("copy");
        copy("a.pem", &cert);
        copy("b.key", &key);
        let e = TlsSide::new(Side::Pbx, &cfg).expect_err("mismatched pair");
        let text = e.to_string();
        assert!(text.starts_with("pbx.tls.key_file: "), "{text}");
        assert!(text.contains("does not match the certificate"), "{text}");

        copy("a.key", &key);
        let side = TlsSide::new(Side::Pbx, &cfg).expect("a matching pair");
        assert_eq!(served_cert(&side).await, first_cert(&dir.join("a.pem")));

        copy("b.pem", &cert);
        copy("b.key", &key);
        side.reload().expect("reload b");
        assert_eq!(served_cert(&side).await, first_cert(&dir.join("b.pem")));

        // RFC 5923 §9: an alias is honoured only for an address the certificate names.
        let b = first_cert(&dir.join("b.pem"));
        assert!(certificate_names_ip(&b, "127.0.0.1".parse().expect("ip")));
        assert!(!certificate_names_ip(&b, "10.0.0.1".parse().expect("ip")));

        // A half-rotated pair: the reload fails and b stays in use.
        copy("a.pem", &cert);
        let e = side.reload().expect_err("mismatch on reload");
        assert!(e.to_string().starts_with("pbx.tls.key_file: "), "{e}");
        assert_eq!(served_cert(&side).await, first_cert(&dir.join("b.pem")));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_missing_certificate_names_its_key() {
        let cfg = config::TlsConfig {
            cert_file: "/nonexistent/cert.pem".into(),
            key_file: "/nonexistent/key.pem".into(),
            client_ca_file: None,
            ca_file: None,
            system_roots: false,
            server_name: None,
        };
        let e = TlsSide::new(Side::Agents, &cfg).expect_err("no such file");
        let text = e.to_string();
        assert!(text.starts_with("agents.tls.cert_file: "), "{text}");
        assert!(text.contains("/nonexistent/cert.pem"), "{text}");
    }
}
