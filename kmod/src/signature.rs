//! Module signatures in the kernel's own format, byte for byte what `scripts/sign-file`
//! writes, and their verification with the kernel's own checks.
//!
//! A signed module is the module, then a DER PKCS#7 (CMS) SignedData over it (detached,
//! SHA-256 with RSA PKCS#1 v1.5, the signer named by issuer and serial number, no
//! certificates, no signed attributes), then a 12-byte `struct module_signature` (all
//! zero but `id_type` = 2, PKCS#7, and the big-endian signature length), then the marker
//! `~Module signature appended~\n`.

use cms::cert::IssuerAndSerialNumber;
use cms::content_info::ContentInfo;
use cms::signed_data::{
    EncapsulatedContentInfo, SignedData, SignerIdentifier, SignerInfo, SignerInfos,
};
use der::asn1::{Null, OctetString, SetOfVec};
use der::{Any, Decode, DecodePem, Encode};
use rsa::pkcs1v15::{Signature, SigningKey, VerifyingKey};
use rsa::pkcs8::DecodePrivateKey;
use rsa::signature::{SignatureEncoding, Signer, Verifier};
use rsa::{RsaPrivateKey, RsaPublicKey};
use sha2::{Digest, Sha256};
use spki::{AlgorithmIdentifierOwned, ObjectIdentifier};
use x509_cert::Certificate;

/// The marker after a signature.
pub const MARKER: &[u8; 28] = b"~Module signature appended~\n";
/// `struct module_signature`'s size.
const INFO_LEN: usize = 12;
/// `PKEY_ID_PKCS7`.
const ID_PKCS7: u8 = 2;

const ID_SIGNED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");
const ID_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.1");
const ID_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const SHA256_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
const COMMON_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.3");

/// Why a module could not be signed or its signature not be verified.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// The private key is not a PEM RSA key (PKCS#8 or PKCS#1).
    #[error("the signing key is not a PEM RSA private key: {0}")]
    Key(String),
    /// The certificate is not a PEM or DER X.509 certificate.
    #[error("the certificate is not an X.509 certificate in PEM or DER: {0}")]
    Certificate(String),
    /// The certificate does not hold the key's public half.
    #[error("the certificate's public key is not the signing key's")]
    KeyMismatch,
    /// The certificate's key is not RSA.
    #[error("the certificate's key is not an RSA key: {0}")]
    NotRsa(String),
    /// The module carries no signature.
    #[error("the module is not signed (no `~Module signature appended~` marker)")]
    Unsigned,
    /// The trailer fails one of the kernel's checks (`mod_check_sig`).
    #[error("the signature trailer is malformed: {0}")]
    BadTrailer(String),
    /// The PKCS#7 message cannot be read or is not the kind the kernel accepts.
    #[error("the PKCS#7 signature cannot be used: {0}")]
    BadMessage(String),
    /// The signer named in the message is not the certificate given.
    #[error("the module was signed by {found}, not by the certificate given ({expected})")]
    OtherSigner {
        /// The signer in the message.
        found: String,
        /// The certificate's.
        expected: String,
    },
    /// The signature does not match the module.
    #[error("the signature does not match the module's contents")]
    Mismatch,
}

/// A certificate, from PEM or DER.
pub fn parse_certificate(bytes: &[u8]) -> Result<Certificate, SignatureError> {
    let certificate = if bytes.starts_with(b"-----BEGIN") {
        Certificate::from_pem(bytes)
    } else {
        Certificate::from_der(bytes)
    };
    certificate.map_err(|e| SignatureError::Certificate(e.to_string()))
}

/// An RSA private key from PEM (PKCS#8 `PRIVATE KEY`, as sign-file's keys and
/// `graftbench module keygen` write, or PKCS#1 `RSA PRIVATE KEY`).
pub fn parse_private_key(pem: &[u8]) -> Result<RsaPrivateKey, SignatureError> {
    let text = std::str::from_utf8(pem).map_err(|e| SignatureError::Key(e.to_string()))?;
    // The key file may also hold the certificate (kbuild's signing_key.pem does).
    if text.contains("-----BEGIN RSA PRIVATE KEY-----") {
        use rsa::pkcs1::DecodeRsaPrivateKey;
        let block = pem_block(text, "RSA PRIVATE KEY")?;
        return RsaPrivateKey::from_pkcs1_pem(&block)
            .map_err(|e| SignatureError::Key(e.to_string()));
    }
    let block = pem_block(text, "PRIVATE KEY")?;
    RsaPrivateKey::from_pkcs8_pem(&block).map_err(|e| SignatureError::Key(e.to_string()))
}

fn pem_block(text: &str, label: &str) -> Result<String, SignatureError> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text
        .find(&begin)
        .ok_or_else(|| SignatureError::Key(format!("no {begin} block")))?;
    let stop = text[start..]
        .find(&end)
        .ok_or_else(|| SignatureError::Key(format!("no {end} line")))?;
    Ok(format!("{}\n", &text[start..start + stop + end.len()]))
}

fn public_key(certificate: &Certificate) -> Result<RsaPublicKey, SignatureError> {
    let spki = &certificate.tbs_certificate.subject_public_key_info;
    if spki.algorithm.oid != RSA_ENCRYPTION {
        return Err(SignatureError::NotRsa(spki.algorithm.oid.to_string()));
    }
    use rsa::pkcs1::DecodeRsaPublicKey;
    RsaPublicKey::from_pkcs1_der(spki.subject_public_key.raw_bytes())
        .map_err(|e| SignatureError::NotRsa(e.to_string()))
}

/// The module without any signature it carries (a re-signed module gets a new one, not a
/// second).
pub fn strip(module: &[u8]) -> Result<&[u8], SignatureError> {
    match split(module) {
        Ok((body, _)) => Ok(body),
        Err(SignatureError::Unsigned) => Ok(module),
        Err(other) => Err(other),
    }
}

/// Splits a signed module into its body and the DER signature, with the kernel's checks
/// on the trailer (`mod_check_sig`).
pub fn split(module: &[u8]) -> Result<(&[u8], &[u8]), SignatureError> {
    let Some(rest) = module.strip_suffix(MARKER.as_slice()) else {
        return Err(SignatureError::Unsigned);
    };
    let bad = |why: String| SignatureError::BadTrailer(why);
    if rest.len() < INFO_LEN {
        return Err(bad(format!(
            "{} bytes before the marker, too few for the 12-byte signature info",
            rest.len()
        )));
    }
    let (before, info) = rest.split_at(rest.len() - INFO_LEN);
    let sig_len = u32::from_be_bytes([info[8], info[9], info[10], info[11]]) as usize;
    // The kernel: `sig_len >= file_len - sizeof(*ms)` is -EBADMSG.
    if sig_len >= rest.len() - INFO_LEN || sig_len == 0 {
        return Err(bad(format!(
            "signature length {sig_len} does not fit the {} bytes before it",
            before.len()
        )));
    }
    if info[2] != ID_PKCS7 {
        return Err(bad(format!(
            "id_type {} is not PKCS#7 (2): the kernel refuses it",
            info[2]
        )));
    }
    if info[..2] != [0, 0] || info[3..8] != [0; 5] {
        return Err(bad(
            "algo, hash, signer_len, key_id_len and padding must be zero for PKCS#7".into(),
        ));
    }
    Ok(before.split_at(before.len() - sig_len))
}

fn sha256_identifier() -> AlgorithmIdentifierOwned {
    // What OpenSSL writes for SHA-256: no parameters.
    AlgorithmIdentifierOwned {
        oid: ID_SHA256,
        parameters: None,
    }
}

fn encoding_error(e: der::Error) -> SignatureError {
    SignatureError::BadMessage(e.to_string())
}

/// Signs a module (any signature it carries is replaced): the bytes `sign-file sha256
/// KEY CERT` writes.
pub fn sign(
    module: &[u8],
    key: &RsaPrivateKey,
    certificate: &Certificate,
) -> Result<Vec<u8>, SignatureError> {
    let body = strip(module)?;
    if public_key(certificate)? != key.to_public_key() {
        return Err(SignatureError::KeyMismatch);
    }
    // No signed attributes: PKCS#1 v1.5 over the content's SHA-256, as sign-file does.
    let signature: Signature = SigningKey::<Sha256>::new(key.clone()).sign(body);
    let signer = SignerInfo {
        version: cms::content_info::CmsVersion::V1,
        sid: SignerIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
            issuer: certificate.tbs_certificate.issuer.clone(),
            serial_number: certificate.tbs_certificate.serial_number.clone(),
        }),
        digest_alg: sha256_identifier(),
        signed_attrs: None,
        signature_algorithm: AlgorithmIdentifierOwned {
            oid: RSA_ENCRYPTION,
            parameters: Some(Any::from(Null)),
        },
        signature: OctetString::new(signature.to_vec()).map_err(encoding_error)?,
        unsigned_attrs: None,
    };
    let signed_data = SignedData {
        version: cms::content_info::CmsVersion::V1,
        digest_algorithms: SetOfVec::try_from(vec![sha256_identifier()]).map_err(encoding_error)?,
        encap_content_info: EncapsulatedContentInfo {
            econtent_type: ID_DATA,
            econtent: None,
        },
        certificates: None,
        crls: None,
        signer_infos: SignerInfos(SetOfVec::try_from(vec![signer]).map_err(encoding_error)?),
    };
    let message = ContentInfo {
        content_type: ID_SIGNED_DATA,
        content: Any::encode_from(&signed_data).map_err(encoding_error)?,
    }
    .to_der()
    .map_err(encoding_error)?;
    let length = u32::try_from(message.len())
        .map_err(|_| SignatureError::BadMessage("the signature is over 4 GiB".into()))?;
    let mut out = Vec::with_capacity(body.len() + message.len() + INFO_LEN + MARKER.len());
    out.extend_from_slice(body);
    out.extend_from_slice(&message);
    out.extend_from_slice(&[0, 0, ID_PKCS7, 0, 0, 0, 0, 0]);
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(MARKER);
    Ok(out)
}

/// What a module's signature says about its signer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureInfo {
    /// The issuer's common name (what `modinfo` shows as `signer`).
    pub signer: String,
    /// The certificate serial number, hex with colons (`modinfo`'s `sig_key`).
    pub key_id: String,
    /// The digest algorithm (`sha256`).
    pub hash: String,
    /// The signature's length in bytes.
    pub length: usize,
}

/// Reads a signed module's signature without verifying it.
pub fn inspect(module: &[u8]) -> Result<SignatureInfo, SignatureError> {
    let (_, message) = split(module)?;
    let signer = signer_info(message)?;
    let SignerIdentifier::IssuerAndSerialNumber(id) = &signer.sid else {
        return Err(SignatureError::BadMessage(
            "the signer is named by key identifier; the kernel expects issuer and serial".into(),
        ));
    };
    let hash = match signer.digest_alg.oid {
        ID_SHA256 => "sha256".to_owned(),
        other => other.to_string(),
    };
    Ok(SignatureInfo {
        signer: common_name(&id.issuer),
        key_id: id
            .serial_number
            .as_bytes()
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":"),
        hash,
        length: message.len(),
    })
}

/// Verifies a signed module against a certificate: the trailer, the message's form, the
/// signer's identity and the RSA signature over the module's SHA-256.
pub fn verify(module: &[u8], certificate: &Certificate) -> Result<SignatureInfo, SignatureError> {
    let info = inspect(module)?;
    let (body, message) = split(module)?;
    let signer = signer_info(message)?;
    let SignerIdentifier::IssuerAndSerialNumber(id) = &signer.sid else {
        return Err(SignatureError::BadMessage(
            "no issuer and serial number".into(),
        ));
    };
    let tbs = &certificate.tbs_certificate;
    if id.issuer != tbs.issuer || id.serial_number != tbs.serial_number {
        return Err(SignatureError::OtherSigner {
            found: info.signer.clone(),
            expected: common_name(&tbs.issuer),
        });
    }
    if signer.digest_alg.oid != ID_SHA256 {
        return Err(SignatureError::BadMessage(format!(
            "digest {} is not SHA-256",
            signer.digest_alg.oid
        )));
    }
    if signer.signature_algorithm.oid != RSA_ENCRYPTION
        && signer.signature_algorithm.oid != SHA256_WITH_RSA
    {
        return Err(SignatureError::BadMessage(format!(
            "signature algorithm {} is not RSA",
            signer.signature_algorithm.oid
        )));
    }
    if signer.signed_attrs.is_some() {
        return Err(SignatureError::BadMessage(
            "signed attributes are not supported (sign-file writes none)".into(),
        ));
    }
    let signature =
        Signature::try_from(signer.signature.as_bytes()).map_err(|_| SignatureError::Mismatch)?;
    VerifyingKey::<Sha256>::new(public_key(certificate)?)
        .verify(body, &signature)
        .map_err(|_| SignatureError::Mismatch)?;
    Ok(info)
}

fn signer_info(message: &[u8]) -> Result<SignerInfo, SignatureError> {
    let content = ContentInfo::from_der(message).map_err(encoding_error)?;
    if content.content_type != ID_SIGNED_DATA {
        return Err(SignatureError::BadMessage(format!(
            "content type {} is not signedData",
            content.content_type
        )));
    }
    let signed: SignedData = content.content.decode_as().map_err(encoding_error)?;
    // Every field is the form the kernel's parser expects; a changed byte anywhere in the
    // message is refused here or by the RSA check.
    if signed.version != cms::content_info::CmsVersion::V1 {
        return Err(SignatureError::BadMessage(format!(
            "SignedData version {:?}, not 1",
            signed.version
        )));
    }
    if signed.digest_algorithms.as_slice() != [sha256_identifier()] {
        return Err(SignatureError::BadMessage(
            "the digest algorithms are not exactly SHA-256".into(),
        ));
    }
    if signed.encap_content_info.econtent_type != ID_DATA {
        return Err(SignatureError::BadMessage(format!(
            "content type {} is not data",
            signed.encap_content_info.econtent_type
        )));
    }
    if signed.encap_content_info.econtent.is_some() {
        return Err(SignatureError::BadMessage(
            "the message carries the content; the kernel expects a detached signature".into(),
        ));
    }
    let mut signers = signed.signer_infos.0.into_vec();
    if signers.len() != 1 {
        return Err(SignatureError::BadMessage(format!(
            "{} signers, the kernel expects one",
            signers.len()
        )));
    }
    let signer = signers.remove(0);
    if signer.version != cms::content_info::CmsVersion::V1 {
        return Err(SignatureError::BadMessage(format!(
            "SignerInfo version {:?}, not 1",
            signer.version
        )));
    }
    Ok(signer)
}

/// The common name in a distinguished name, or the whole name when it has none.
pub fn common_name(name: &x509_cert::name::Name) -> String {
    name.0
        .iter()
        .flat_map(|rdn| rdn.0.iter())
        .find(|attribute| attribute.oid == COMMON_NAME)
        .and_then(|attribute| {
            let value = attribute.value.value();
            std::str::from_utf8(value).ok().map(str::to_owned)
        })
        .unwrap_or_else(|| name.to_string())
}

/// The SHA-256 of a module's body (its signature stripped), hex.
pub fn body_sha256(module: &[u8]) -> Result<String, SignatureError> {
    let body = strip(module)?;
    Ok(Sha256::digest(body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trailer(sig_len: u32, id_type: u8) -> Vec<u8> {
        let mut module = vec![0u8; 64];
        module.extend_from_slice(&[0, 0, id_type, 0, 0, 0, 0, 0]);
        module.extend_from_slice(&sig_len.to_be_bytes());
        module.extend_from_slice(MARKER);
        module
    }

    #[test]
    fn the_kernels_trailer_checks() {
        assert!(matches!(
            split(b"plain module"),
            Err(SignatureError::Unsigned)
        ));
        assert!(split(&trailer(10, 2)).is_ok());
        // As long as everything before it: the kernel's `>=`.
        assert!(matches!(
            split(&trailer(64, 2)),
            Err(SignatureError::BadTrailer(_))
        ));
        assert!(matches!(
            split(&trailer(u32::MAX, 2)),
            Err(SignatureError::BadTrailer(_))
        ));
        assert!(matches!(
            split(&trailer(10, 1)),
            Err(SignatureError::BadTrailer(_))
        ));
        let mut nonzero = trailer(10, 2);
        let at = nonzero.len() - MARKER.len() - INFO_LEN + 4;
        nonzero[at] = 1;
        assert!(matches!(
            split(&nonzero),
            Err(SignatureError::BadTrailer(_))
        ));
        let mut short = 5u32.to_be_bytes().to_vec();
        short.extend_from_slice(MARKER);
        assert!(matches!(split(&short), Err(SignatureError::BadTrailer(_))));
    }
}
