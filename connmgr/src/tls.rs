//! TLS termination: certificates from a folder, chosen per connection by the
//! name the client asks for (SNI), as Pushpin's connmgr does: `<name>.crt`
//! with `<name>.key`, then the wildcard `_.<parent domain>`, then
//! `default_<port>`, then `default`. A client that asks for an unknown
//! name, or none, gets the default certificate. ALPN offers `h2` and
//! `http/1.1`, so browsers hold many streams on one connection.

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why the certificates cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The folder cannot be read.
    #[error("cannot read the certificate folder {0}: {1}")]
    Folder(PathBuf, std::io::Error),
    /// A certificate or key file is unusable.
    #[error("{0}: {1}")]
    File(PathBuf, String),
    /// No certificate would serve a client that names no host.
    #[error("no default certificate in {0} (default.crt and default.key, or default_<port>.*)")]
    NoDefault(PathBuf),
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// Certificates by name.
#[derive(Debug)]
struct Certificates {
    by_name: HashMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let Some(name) = hello.server_name() else {
            return Some(self.default.clone());
        };
        let name = name.to_ascii_lowercase();
        if let Some(key) = self.by_name.get(&name) {
            return Some(key.clone());
        }
        if let Some((_, parent)) = name.split_once('.') {
            if let Some(key) = self.by_name.get(&format!("_.{parent}")) {
                return Some(key.clone());
            }
        }
        Some(self.default.clone())
    }
}

fn load_pair(
    provider: &rustls::crypto::CryptoProvider,
    crt: &Path,
    key: &Path,
) -> Result<Arc<CertifiedKey>, TlsError> {
    let bad = |path: &Path, what: String| TlsError::File(path.to_owned(), what);
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(crt)
        .map_err(|e| bad(crt, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad(crt, e.to_string()))?;
    if chain.is_empty() {
        return Err(bad(crt, "no PEM certificate in it".into()));
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| bad(key, e.to_string()))?;
    let signing = provider
        .key_provider
        .load_private_key(private)
        .map_err(|e| bad(key, e.to_string()))?;
    Ok(Arc::new(CertifiedKey::new(chain, signing)))
}

/// A server configuration serving the certificates of `dir` on `port`.
pub fn server_config(dir: &Path, port: u16) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut by_name = HashMap::new();
    let entries = std::fs::read_dir(dir).map_err(|e| TlsError::Folder(dir.to_owned(), e))?;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("crt") {
            continue;
        }
        let Some(name) = path.file_stem().and_then(|n| n.to_str()) else {
            continue;
        };
        let key = path.with_extension("key");
        if !key.exists() {
            tracing::warn!(certificate = %path.display(), "certificate without a .key beside it; ignored");
            continue;
        }
        by_name.insert(
            name.to_ascii_lowercase(),
            load_pair(&provider, &path, &key)?,
        );
    }
    let default = by_name
        .get(&format!("default_{port}"))
        .or_else(|| by_name.get("default"))
        .cloned()
        .ok_or_else(|| TlsError::NoDefault(dir.to_owned()))?;
    tracing::info!(port, names = by_name.len(), dir = %dir.display(), "TLS certificates loaded");
    let resolver = Arc::new(Certificates { by_name, default });
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Whether the first bytes of a connection look like a TLS handshake (a
/// handshake record), as opposed to, say, a plain HTTP request.
pub fn looks_like_tls(first: &[u8]) -> bool {
    first.first() == Some(&0x16)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &Path, name: &str, host: &str) {
        let cert = rcgen::generate_simple_self_signed(vec![host.to_owned()]).unwrap();
        std::fs::write(dir.join(format!("{name}.crt")), cert.cert.pem()).unwrap();
        std::fs::write(
            dir.join(format!("{name}.key")),
            cert.key_pair.serialize_pem(),
        )
        .unwrap();
    }

    /// A folder of its own, removed (keys and all) when the test ends.
    struct TempDir(PathBuf);

    impl std::ops::Deref for TempDir {
        type Target = Path;
        fn deref(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn temp(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("hf-tls-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    #[test]
    fn loads_a_folder_and_requires_a_default() {
        let dir = temp("ok");
        write_pair(&dir, "default", "localhost");
        write_pair(&dir, "example.com", "example.com");
        write_pair(&dir, "_.example.org", "a.example.org");
        assert!(server_config(&dir, 443).is_ok());

        let none = temp("none");
        write_pair(&none, "example.com", "example.com");
        assert!(matches!(
            server_config(&none, 443),
            Err(TlsError::NoDefault(_))
        ));
        write_pair(&none, "default_8443", "localhost");
        assert!(server_config(&none, 8443).is_ok());
    }

    #[test]
    fn malformed_files_are_named() {
        let dir = temp("bad");
        std::fs::write(dir.join("default.crt"), "not a certificate").unwrap();
        std::fs::write(dir.join("default.key"), "not a key").unwrap();
        let err = server_config(&dir, 443).unwrap_err().to_string();
        assert!(err.contains("default.crt"), "{err}");
        assert!(server_config(&temp("missing").join("nope"), 443).is_err());
    }

    #[test]
    fn tls_is_told_from_plain_http() {
        assert!(looks_like_tls(&[0x16, 3, 1]));
        assert!(!looks_like_tls(b"GET / HTTP/1.1"));
        assert!(!looks_like_tls(b""));
    }
}
