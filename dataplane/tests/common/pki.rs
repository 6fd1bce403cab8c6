//! Certificates the TLS tests make with the openssl CLI: a CA, server
//! certificates, and client certificates with SPIFFE IDs, in a temporary
//! directory removed on drop.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The name the server certificate holds (`*.sluice.test` too).
pub const SERVER_NAME: &str = "sluice.test";

pub struct Pki {
    pub dir: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("running openssl (scripts/install-deps.sh installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Pki {
    /// A CA `ca`, a second CA `other-ca`, and the server certificate
    /// `server` (sluice.test, *.sluice.test) signed by `ca`.
    pub fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("sluice-pki-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let pki = Self { dir };
        pki.ca("ca");
        pki.ca("other-ca");
        pki.server("server", "ca", &["sluice.test", "*.sluice.test"]);
        pki
    }

    pub fn path(&self, file: &str) -> String {
        self.dir.join(file).display().to_string()
    }

    fn key(&self, name: &str) {
        openssl(
            &self.dir,
            &[
                "ecparam",
                "-name",
                "prime256v1",
                "-genkey",
                "-noout",
                "-out",
                &format!("{name}.key"),
            ],
        );
    }

    fn ca(&self, name: &str) {
        self.key(name);
        openssl(
            &self.dir,
            &[
                "req",
                "-x509",
                "-new",
                "-key",
                &format!("{name}.key"),
                "-subj",
                &format!("/CN=sluice test {name}"),
                "-days",
                "2",
                "-out",
                &format!("{name}.pem"),
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
    }

    fn leaf(&self, name: &str, ca: &str, cn: &str, ext: &str) {
        self.key(name);
        openssl(
            &self.dir,
            &[
                "req",
                "-new",
                "-key",
                &format!("{name}.key"),
                "-subj",
                &format!("/CN={cn}"),
                "-out",
                &format!("{name}.csr"),
            ],
        );
        std::fs::write(self.dir.join(format!("{name}.ext")), ext).unwrap();
        openssl(
            &self.dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                &format!("{ca}.pem"),
                "-CAkey",
                &format!("{ca}.key"),
                "-CAcreateserial",
                "-days",
                "2",
                "-out",
                &format!("{name}.pem"),
                "-extfile",
                &format!("{name}.ext"),
            ],
        );
    }

    /// A server certificate `name` for `dns` names, signed by `ca`.
    pub fn server(&self, name: &str, ca: &str, dns: &[&str]) {
        let san: Vec<String> = dns.iter().map(|d| format!("DNS:{d}")).collect();
        self.leaf(
            name,
            ca,
            dns[0],
            &format!(
                "subjectAltName={}\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
                san.join(",")
            ),
        );
    }

    /// A server certificate `name` with these subject alternative names
    /// (`DNS:…`, `IP:…`, `URI:…`), signed by `ca`.
    pub fn server_with_sans(&self, name: &str, ca: &str, sans: &[&str]) {
        self.leaf(
            name,
            ca,
            name,
            &format!(
                "subjectAltName={}\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
                sans.join(",")
            ),
        );
    }

    /// A client certificate `name` with the SPIFFE ID `spiffe`, signed by `ca`.
    pub fn client(&self, name: &str, ca: &str, spiffe: &str) {
        self.leaf(
            name,
            ca,
            name,
            &format!(
                "subjectAltName=URI:{spiffe}\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n"
            ),
        );
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
