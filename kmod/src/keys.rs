//! A module signing key and its self-signed certificate, like the kernel's own
//! `certs/x509.genkey` makes: RSA, SHA-256, `CA:FALSE`, digitalSignature, subject and
//! authority key identifiers.

use crate::signature::SignatureError;
use der::EncodePem;
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::{EncodePrivateKey, LineEnding};
use rsa::RsaPrivateKey;
use sha2::Sha256;
use std::str::FromStr;
use std::time::Duration;
use x509_cert::builder::{Builder, CertificateBuilder, Profile};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::SubjectPublicKeyInfoOwned;
use x509_cert::time::Validity;

/// A new key pair, PEM-encoded.
pub struct KeyPair {
    /// The private key, PKCS#8 PEM. Write it readable by its owner only.
    pub private_key_pem: String,
    /// The certificate, PEM.
    pub certificate_pem: String,
}

/// Makes an RSA key of `bits` and a certificate for it, valid for `days`, whose subject
/// is `CN=<common_name>`.
pub fn generate(common_name: &str, bits: usize, days: u64) -> Result<KeyPair, SignatureError> {
    if !(2048..=8192).contains(&bits) {
        return Err(SignatureError::Key(format!(
            "{bits}-bit keys are not offered: use 2048 to 8192"
        )));
    }
    if common_name.is_empty() || common_name.contains(['=', ',', '+', '\\', '"', '\n']) {
        return Err(SignatureError::Certificate(format!(
            "`{common_name}` cannot be a common name: leave out = , + \\ \" and line breaks"
        )));
    }
    let key = RsaPrivateKey::new(&mut rand_core::OsRng, bits)
        .map_err(|e| SignatureError::Key(e.to_string()))?;
    let error = |e: &dyn std::fmt::Display| SignatureError::Certificate(e.to_string());
    let subject = Name::from_str(&format!("CN={common_name}")).map_err(|e| error(&e))?;
    // A positive 20-byte serial, as OpenSSL makes.
    let mut serial = [0u8; 20];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut serial);
    serial[0] &= 0x7f;
    serial[0] |= 0x01;
    let serial = SerialNumber::new(&serial).map_err(|e| error(&e))?;
    let validity = Validity::from_now(Duration::from_secs(days.saturating_mul(86_400)))
        .map_err(|e| error(&e))?;
    let public = SubjectPublicKeyInfoOwned::from_key(key.to_public_key()).map_err(|e| error(&e))?;
    let signer = SigningKey::<Sha256>::new(key.clone());
    let profile = Profile::Leaf {
        issuer: subject.clone(),
        enable_key_agreement: false,
        enable_key_encipherment: false,
    };
    let builder = CertificateBuilder::new(profile, serial, validity, subject, public, &signer)
        .map_err(|e| error(&e))?;
    let certificate = builder
        .build::<rsa::pkcs1v15::Signature>()
        .map_err(|e| error(&e))?;
    Ok(KeyPair {
        private_key_pem: key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| SignatureError::Key(e.to_string()))?
            .to_string(),
        certificate_pem: certificate.to_pem(LineEnding::LF).map_err(|e| error(&e))?,
    })
}
