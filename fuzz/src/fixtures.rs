//! Fixed inputs from the test vectors (tests/vectors) and the documented
//! examples (docs/formats.md, docs/audit-format.md), read at compile time so
//! the targets follow them when they change: the keys the vectors were
//! signed with, what they signed, and the unit's records and baseline that
//! appraisal needs.

use std::sync::OnceLock;

use attestd_core::baseline::Baseline;
use attestd_core::keys::PublicKey;
use attestd_core::record::{
    record_id, Calibration, Provisioning, Record, CALIBRATION_TYPE, PROVISIONING_TYPE,
};
use attestd_core::Reason;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

const EVIDENCE_ES256: &str = include_str!("../../tests/vectors/evidence-es256.json");
const EVIDENCE_ED25519: &str = include_str!("../../tests/vectors/evidence-ed25519.json");
const RECORD_PROVISIONING: &str = include_str!("../../tests/vectors/record-provisioning.json");
const FORMATS_MD: &str = include_str!("../../docs/formats.md");
const AUDIT_FORMAT_MD: &str = include_str!("../../docs/audit-format.md");

/// A device key of a vector and the Sig_structure its token signs.
pub struct DeviceVector {
    pub key: PublicKey,
    pub to_be_signed: Vec<u8>,
    pub token: Vec<u8>,
}

pub struct Fixtures {
    pub es256: DeviceVector,
    pub ed25519: DeviceVector,
    /// The station key of record-provisioning.json and the PAE it signed.
    pub station_key: PublicKey,
    pub station_pae: Vec<u8>,
    pub provisioning: Provisioning,
    pub provisioning_id: String,
    pub calibration: Calibration,
    pub calibration_id: String,
    /// docs/formats.md `baseline-pm200-v2`, which the ES256 vector's
    /// evidence meets with no reason at all.
    pub baseline: Baseline,
    /// docs/audit-format.md's audit key.
    pub audit_key: PublicKey,
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("vector hex"))
        .collect()
}

fn spki(b64: &str) -> PublicKey {
    let der = B64.decode(b64.trim()).expect("vector base64");
    PublicKey::from_spki_der(&der, Reason::FieldInvalid, "vector key").expect("vector key")
}

fn device(json: &str) -> DeviceVector {
    let v: serde_json::Value = serde_json::from_str(json).expect("vector JSON");
    let s = |p: &str| v.pointer(p).and_then(|x| x.as_str()).expect(p).to_owned();
    DeviceVector {
        key: spki(&s("/device_key/spki_der")),
        to_be_signed: hex(&s("/to_be_signed_hex")),
        token: hex(&s("/token_hex")),
    }
}

/// The body of a fenced block of a document whose info string starts with
/// `info` (e.g. "json example=baseline-pm200-v2").
pub fn doc_block(doc: &str, info: &str) -> String {
    let mut lines = doc.lines();
    let open = format!("```{info}");
    lines
        .by_ref()
        .find(|l| *l == open || l.starts_with(&format!("{open} ")))
        .unwrap_or_else(|| panic!("no block {info}"));
    lines
        .take_while(|l| !l.starts_with("```"))
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn formats_example(name: &str) -> String {
    doc_block(FORMATS_MD, &format!("json example={name}"))
}

/// The export of docs/audit-format.md's test vector.
pub fn audit_vector_export() -> String {
    doc_block(AUDIT_FORMAT_MD, "jsonl audit-vector-export") + "\n"
}

pub fn get() -> &'static Fixtures {
    static F: OnceLock<Fixtures> = OnceLock::new();
    F.get_or_init(|| {
        let rec: serde_json::Value = serde_json::from_str(RECORD_PROVISIONING).expect("vector");
        let s = |p: &str| rec.pointer(p).and_then(|x| x.as_str()).expect(p).to_owned();
        let payload = B64.decode(s("/envelope/payload")).expect("payload");
        let Ok(Record::Provisioning(provisioning)) = Record::parse(PROVISIONING_TYPE, &payload)
        else {
            panic!("the provisioning vector parses")
        };
        let cal_json = formats_example("calibration-pm200-000123");
        let Ok(Record::Calibration(calibration)) =
            Record::parse(CALIBRATION_TYPE, cal_json.as_bytes())
        else {
            panic!("the calibration example parses")
        };
        let baseline = Baseline::parse(formats_example("baseline-pm200-v2").as_bytes())
            .expect("the baseline example parses");
        Fixtures {
            es256: device(EVIDENCE_ES256),
            ed25519: device(EVIDENCE_ED25519),
            station_key: spki(&s("/station_key/spki_der")),
            station_pae: hex(&s("/pae_hex")),
            provisioning_id: record_id(PROVISIONING_TYPE, &payload),
            provisioning,
            calibration_id: record_id(CALIBRATION_TYPE, cal_json.as_bytes()),
            calibration,
            baseline,
            audit_key: spki(&doc_block(AUDIT_FORMAT_MD, "text audit-vector-key")),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixtures_load() {
        let f = get();
        assert!(f.es256.key.key_id().starts_with("sha256:0596f762"));
        assert!(f.station_pae.starts_with(b"DSSEv1 44 "));
        assert_eq!(f.baseline.version, 2);
        assert!(audit_vector_export().starts_with("{\"audit_export\""));
    }
}
