//! End-to-end: the audit trail. Each state-changing call leaves exactly one
//! entry naming its principal; refusals leave none; the export verifies and
//! any tampering is named at the entry where it happened; after repeated
//! SIGKILLs under load the chain still verifies and every acknowledged
//! change has its entry (and no entry lacks its change).

use std::sync::Arc;

use crate::common::*;
use attestd_client::core::audit::{verify_chain, GENESIS};
use attestd_client::core::keys::KeyAlg;
use attestd_client::pb;
use attestd_client::SigningKey;

crate::both_backends!(every_change_leaves_one_entry_naming_its_principal);
async fn every_change_leaves_one_entry_naming_its_principal() {
    let server = TestServer::start();
    let admin = server.admin().await;
    let auditor = server.client(Some(AUDITOR_TOKEN)).await;
    let mes = server.client(Some(MES_TOKEN)).await;
    let st_key = register_station(
        &admin,
        "line1-prov",
        &[pb::RecordKind::Provisioning],
        &["PM-200"],
    )
    .await;
    let station = server.station("line1-prov").await;
    let unit = SigningKey::generate(KeyAlg::Es256).unwrap();
    provision(&station, "line1-prov", &st_key, 1, "PM200-1", &unit)
        .await
        .unwrap();
    // A refusal: sequence regressed. No entry.
    assert!(
        provision(&station, "line1-prov", &st_key, 1, "PM200-2", &unit)
            .await
            .is_err()
    );
    boot(&server.client(None).await, "PM200-1", &unit, 1)
        .await
        .unwrap();
    admin
        .admin()
        .assign_device(pb::AssignDeviceRequest {
            serial: "PM200-1".into(),
            tenant: "st-mary".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    admin
        .release()
        .set_quarantine(pb::SetQuarantineRequest {
            serial: "PM200-1".into(),
            on: true,
            reason: "returned".into(),
        })
        .await
        .unwrap();
    mes.release()
        .check_release(pb::CheckReleaseRequest {
            serial: "PM200-1".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    admin
        .admin()
        .revoke_station(pb::RevokeStationRequest {
            station_id: "line1-prov".into(),
            reason: "retired".into(),
        })
        .await
        .unwrap();

    let entries = audit_entries(&auditor).await;
    let got: Vec<(&str, &str, &str)> = entries
        .iter()
        .map(|e| (e.principal.as_str(), e.action.as_str(), e.target.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("admin", "station.register", "line1-prov"),
            ("line1-prov", "record.provisioning", "PM200-1"),
            ("device:PM200-1", "evidence.accept", "PM200-1"),
            ("admin", "device.assign", "PM200-1"),
            ("admin", "device.quarantine", "PM200-1"),
            ("mes", "release.decide", "PM200-1"),
            ("admin", "station.revoke", "line1-prov"),
        ]
    );
    assert_eq!(entries[4].reason, "returned");
    assert!(
        entries[5].details.contains("HOLD") && entries[5].details.contains("QUARANTINED"),
        "{}",
        entries[5].details
    );
    let head = verify_chain(&entries, GENESIS, 0).expect("the export verifies");
    let h = auditor
        .audit()
        .get_audit_head(pb::GetAuditHeadRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!((h.sequence, h.hash.as_slice()), (7, head.as_slice()));
    let page = auditor
        .audit()
        .list_audit_events(pb::ListAuditEventsRequest {
            after_sequence: 5,
            page_size: 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        page.events.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        [6, 7]
    );
    // Filters: by action, by principal, by target; pages of one carry on.
    let filtered = |principal: &str, action: &str, target: &str, after: u64, size: i32| {
        let auditor = auditor.clone();
        let req = pb::ListAuditEventsRequest {
            after_sequence: after,
            page_size: size,
            principal: principal.into(),
            action: action.into(),
            target: target.into(),
        };
        async move {
            auditor
                .audit()
                .list_audit_events(req)
                .await
                .unwrap()
                .into_inner()
        }
    };
    for e in &entries {
        let by_action = filtered("", &e.action, "", 0, 100).await;
        let want: Vec<u64> = entries
            .iter()
            .filter(|x| x.action == e.action)
            .map(|x| x.seq)
            .collect();
        let got: Vec<u64> = by_action.events.iter().map(|x| x.sequence).collect();
        assert_eq!(got, want, "action {}", e.action);
        assert_eq!(by_action.next_after_sequence, 0);
        let by_principal = filtered(&e.principal, "", "", 0, 100).await;
        assert!(by_principal
            .events
            .iter()
            .all(|x| x.principal == e.principal));
        assert!(by_principal.events.iter().any(|x| x.sequence == e.seq));
        let exact = filtered(&e.principal, &e.action, &e.target, 0, 100).await;
        assert!(exact.events.iter().any(|x| x.sequence == e.seq));
    }
    let mut after = 0;
    let mut paged = Vec::new();
    loop {
        let p = filtered("admin", "", "", after, 1).await;
        paged.extend(p.events.iter().map(|x| x.sequence));
        if p.next_after_sequence == 0 {
            break;
        }
        after = p.next_after_sequence;
    }
    let want: Vec<u64> = entries
        .iter()
        .filter(|x| x.principal == "admin")
        .map(|x| x.seq)
        .collect();
    assert!(want.len() >= 2);
    assert_eq!(paged, want);
    assert!(filtered("nobody", "", "", 0, 100).await.events.is_empty());

    // Tampering is caught at the entry where it happened.
    let mut changed = entries.clone();
    changed[3].details.push('!');
    assert_eq!(verify_chain(&changed, GENESIS, 0).unwrap_err().index, 3);
    let mut deleted = entries.clone();
    deleted.remove(2);
    assert_eq!(verify_chain(&deleted, GENESIS, 0).unwrap_err().index, 2);
    let mut swapped = entries.clone();
    swapped.swap(4, 5);
    assert_eq!(verify_chain(&swapped, GENESIS, 0).unwrap_err().index, 4);
}

crate::both_backends!(after_repeated_sigkills_the_chain_verifies_and_matches_the_changes);
async fn after_repeated_sigkills_the_chain_verifies_and_matches_the_changes() {
    let mut server = TestServer::start();
    let admin = server.admin().await;
    let st_key = register_station(
        &admin,
        "line1-prov",
        &[pb::RecordKind::Provisioning],
        &["PM-200"],
    )
    .await;
    let station = server.station("line1-prov").await;
    let mut units = Vec::new();
    for i in 0..8u64 {
        let key = Arc::new(SigningKey::generate(KeyAlg::Ed25519).unwrap());
        let serial = format!("PM200-{i:03}");
        provision(&station, "line1-prov", &st_key, i + 1, &serial, &key)
            .await
            .unwrap();
        units.push((serial, key));
    }
    let mut acked: Vec<String> = Vec::new();
    for bootcount in 1..=3u64 {
        let device = server.client(None).await;
        let tasks: Vec<_> = units
            .iter()
            .cloned()
            .map(|(serial, key)| {
                let device = device.clone();
                tokio::spawn(async move {
                    boot(&device, &serial, &key, bootcount)
                        .await
                        .map(|r| r.evidence_id)
                })
            })
            .collect();
        for t in tasks {
            acked.push(t.await.unwrap().expect("boot acknowledged"));
        }
        server.kill9();
        server.restart();
    }
    let auditor = server.client(Some(AUDITOR_TOKEN)).await;
    let entries = audit_entries(&auditor).await;
    verify_chain(&entries, GENESIS, 0).expect("the chain verifies after three SIGKILLs");
    let evidence_entries: Vec<&str> = entries
        .iter()
        .filter(|e| e.action == "evidence.accept")
        .map(|e| e.details.split(';').next().unwrap_or(""))
        .collect();
    for id in &acked {
        assert!(
            evidence_entries.contains(&id.as_str()),
            "acknowledged {id} has no audit entry"
        );
    }
    // No entry without its change: as many evidence entries as stored evidence.
    assert_eq!(evidence_entries.len() as u64, server.stored().3);
    assert_eq!(
        entries
            .iter()
            .filter(|e| e.action == "record.provisioning")
            .count() as u64,
        server.stored().2
    );
}

crate::both_backends!(the_head_is_signed_in_checkpoints_that_verify_with_the_service_key_only);
async fn the_head_is_signed_in_checkpoints_that_verify_with_the_service_key_only() {
    use attestd_client::core::audit::{verify_checkpoints, CHECKPOINT_ACTION};
    use attestd_client::core::keys::PublicKey;
    use base64::Engine as _;
    let server = TestServer::start_with(Options {
        limits: vec![("checkpoint_interval_secs", "1".into())],
        ..Options::default()
    });
    let admin = server.admin().await;
    register_station(
        &admin,
        "line1-prov",
        &[pb::RecordKind::Provisioning],
        &["PM-200"],
    )
    .await;
    let auditor = server.client(Some(AUDITOR_TOKEN)).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let entries = loop {
        let entries = audit_entries(&auditor).await;
        if entries.iter().any(|e| e.action == CHECKPOINT_ACTION) {
            break entries;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint after 10 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    verify_chain(&entries, GENESIS, 0).unwrap();
    // The service key was made at first start, private part readable by its owner only.
    let key_file = server.data_dir().join("audit-key.pkcs8");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let spki = base64::engine::general_purpose::STANDARD
        .decode(
            std::fs::read_to_string(server.data_dir().join("audit-key.pkcs8.pub"))
                .unwrap()
                .trim(),
        )
        .unwrap();
    let key =
        PublicKey::from_spki_der(&spki, attestd_client::core::Reason::FieldInvalid, "key").unwrap();
    assert!(verify_checkpoints(&entries, &key).unwrap() >= 1);
    // GetAuditHead carries the newest checkpoint, which verifies.
    let head = auditor
        .audit()
        .get_audit_head(pb::GetAuditHeadRequest {})
        .await
        .unwrap()
        .into_inner();
    let newest = entries
        .iter()
        .rev()
        .find(|e| e.action == CHECKPOINT_ACTION)
        .unwrap();
    let cp = head.checkpoint.expect("the head carries a checkpoint");
    assert_eq!(
        (cp.sequence, cp.details.as_str()),
        (newest.seq, newest.details.as_str())
    );
    let parsed = attestd_client::core::audit::Checkpoint::parse(&cp.details).unwrap();
    assert!(parsed.verify(&key));
    assert!(parsed.seq < cp.sequence && cp.sequence <= head.sequence);
    // A checkpoint signed by another key does not verify.
    let other = SigningKey::generate(KeyAlg::Ed25519).unwrap();
    let err = verify_checkpoints(&entries, other.public_key()).unwrap_err();
    assert_eq!(err.why, "checkpoint is not signed by this key");
    // Nothing new: no new checkpoint (the chain does not grow by itself).
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let later = audit_entries(&auditor).await;
    assert_eq!(
        later.len(),
        entries.len(),
        "an idle chain gets no more checkpoints"
    );
}

crate::both_backends!(refused_calls_are_summarized_per_caller_not_one_entry_each);
async fn refused_calls_are_summarized_per_caller_not_one_entry_each() {
    let server = TestServer::start_with(Options {
        limits: vec![("checkpoint_interval_secs", "1".into())],
        ..Options::default()
    });
    let admin = server.admin().await;
    let anonymous = admin.with_token(None).unwrap();
    let hospital = admin.with_token(Some(HOSPITAL_TOKEN)).unwrap();
    for _ in 0..3 {
        let _ = anonymous
            .admin()
            .list_stations(pb::ListStationsRequest::default())
            .await;
    }
    for _ in 0..2 {
        let _ = hospital
            .admin()
            .list_stations(pb::ListStationsRequest::default())
            .await;
    }
    let auditor = server.client(Some(AUDITOR_TOKEN)).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let summary = loop {
        let entries = audit_entries(&auditor).await;
        if let Some(e) = entries.into_iter().find(|e| e.action == "auth.failures") {
            break e;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no summary after 10 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(summary.target, "5 refused calls", "{summary:?}");
    assert!(
        summary.details.contains("peer 127.0.0.1: 3"),
        "{}",
        summary.details
    );
    assert!(
        summary.details.contains("principal hospital: 2"),
        "{}",
        summary.details
    );
    assert!(!summary.details.contains(HOSPITAL_TOKEN));
}

/// A verifier of audit exports written from `docs/audit-format.md` alone:
/// its own SHA-256 and Ed25519 (ring), its own JSON parsing, nothing from
/// attestd. If the document and the code disagree, this fails.
mod doc_verifier {
    use base64::Engine as _;
    use ring::{digest, signature};
    use serde_json::Value;

    fn unhex(s: &str) -> Result<Vec<u8>, String> {
        if !s.len().is_multiple_of(2) || s.bytes().any(|b| !matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(format!("{s:?} is not lowercase hex"));
        }
        (0..s.len() / 2)
            .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|e| e.to_string()))
            .collect()
    }

    fn hash32(v: &Value, what: &str) -> Result<Vec<u8>, String> {
        let h = unhex(v.as_str().ok_or(format!("{what} is not a string"))?)?;
        (h.len() == 32)
            .then_some(h)
            .ok_or(format!("{what} is not 32 bytes"))
    }

    fn u64_of(v: &Value, what: &str) -> Result<u64, String> {
        v.as_u64().ok_or(format!("{what} is not a u64"))
    }

    fn text<'a>(v: &'a Value, what: &str) -> Result<&'a str, String> {
        v.as_str().ok_or(format!("{what} is not a string"))
    }

    /// Section 2: the entry hash.
    fn entry_hash(prev: &[u8], e: &Value) -> Result<Vec<u8>, String> {
        let mut m = b"attestd-audit-v1".to_vec();
        m.extend_from_slice(prev);
        m.extend_from_slice(&u64_of(&e["sequence"], "sequence")?.to_be_bytes());
        let at = e["at_ms"].as_i64().ok_or("at_ms is not an i64")?;
        m.extend_from_slice(&at.to_be_bytes());
        for f in ["principal", "action", "target", "reason", "details"] {
            let s = text(&e[f], f)?.as_bytes();
            m.extend_from_slice(&(s.len() as u32).to_be_bytes());
            m.extend_from_slice(s);
        }
        Ok(digest::digest(&digest::SHA256, &m).as_ref().to_vec())
    }

    fn ed25519_ok(raw_key: &[u8], msg: &[u8], sig: &[u8]) -> bool {
        signature::UnparsedPublicKey::new(&signature::ED25519, raw_key)
            .verify(msg, sig)
            .is_ok()
    }

    /// Section 5, with the key (base64 SPKI). Returns (first, last, checkpoints).
    pub(crate) fn verify(file: &str, key_b64: &str) -> Result<(u64, u64, usize), String> {
        let spki = base64::engine::general_purpose::STANDARD
            .decode(key_b64.trim())
            .map_err(|e| e.to_string())?;
        let prefix = unhex("302a300506032b6570032100")?;
        if spki.len() != 44 || !spki.starts_with(&prefix) {
            return Err("not an Ed25519 SPKI".into());
        }
        let raw = &spki[12..];
        let key_id = format!(
            "sha256:{}",
            digest::digest(&digest::SHA256, &spki)
                .as_ref()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        let lines: Vec<Value> = file
            .lines()
            .map(|l| serde_json::from_str(l).map_err(|e| e.to_string()))
            .collect::<Result<_, _>>()?;
        let range = lines.first().ok_or("empty file")?;
        if range["audit_export"] != "attestd-audit-export-v1" {
            return Err("line 1 is not a range line".into());
        }
        let first = u64_of(&range["first"], "first")?;
        let last = u64_of(&range["last"], "last")?;
        let range_prev = hash32(&range["prev_hash"], "prev_hash")?;
        if first == 0 || last + 1 < first || (first == 1 && range_prev != [0; 32]) {
            return Err("bad range".into());
        }
        let (mut expected, mut prev) = (first, range_prev.clone());
        let mut seen: Vec<(u64, Vec<u8>)> = Vec::new();
        let mut checkpoints = 0;
        let mut head = None;
        for (i, l) in lines.iter().enumerate().skip(1) {
            if head.is_some() {
                return Err("a line after the signed head".into());
            }
            if l.get("signed_head").is_some() {
                head = Some(&l["signed_head"]);
                continue;
            }
            let seq = u64_of(&l["sequence"], "sequence")?;
            if seq > last {
                return Err(format!("entry {seq} beyond the stated range"));
            }
            if seq > expected {
                let at = if seen.is_empty() {
                    "at the start"
                } else {
                    "inside"
                };
                return Err(format!("entries {expected}..{} missing {at}", seq - 1));
            }
            if seq < expected {
                return Err(format!("entry {seq} repeated or moved"));
            }
            let h = hash32(&l["hash"], "hash")?;
            if hash32(&l["prev_hash"], "prev_hash")? != prev || entry_hash(&prev, l)? != h {
                return Err(format!("entry {seq} (line {}) does not verify", i + 1));
            }
            if l["action"] == "audit.checkpoint" {
                // Section 3.1: "head <seq> <hash>; at <ms>; key <id>; sig <hex>".
                let d = text(&l["details"], "details")?;
                let parts: Vec<&str> = d.split("; ").collect();
                let [h_part, at_part, key_part, sig_part] = parts[..] else {
                    return Err("checkpoint details".into());
                };
                let hp: Vec<&str> = h_part.split(' ').collect();
                let (Some(cs), Some(ch)) = (hp.get(1), hp.get(2)) else {
                    return Err("checkpoint head".into());
                };
                let cseq: u64 = cs.parse().map_err(|_| "checkpoint seq")?;
                let chash = unhex(ch)?;
                let cat: i64 = at_part
                    .strip_prefix("at ")
                    .and_then(|s| s.parse().ok())
                    .ok_or("checkpoint at")?;
                if key_part.strip_prefix("key ") != Some(key_id.as_str()) {
                    return Err("checkpoint by another key".into());
                }
                let sig = unhex(sig_part.strip_prefix("sig ").ok_or("checkpoint sig")?)?;
                let mut m = b"attestd-checkpoint-v1".to_vec();
                m.extend_from_slice(&cseq.to_be_bytes());
                m.extend_from_slice(&chash);
                m.extend_from_slice(&cat.to_be_bytes());
                if !ed25519_ok(raw, &m, &sig) {
                    return Err(format!("checkpoint {seq} signature"));
                }
                if cseq >= first && !seen.iter().any(|(s, h)| *s == cseq && *h == chash) {
                    return Err(format!("checkpoint {seq} names a head not in the export"));
                }
                checkpoints += 1;
            }
            seen.push((seq, h.clone()));
            prev = h;
            expected = seq + 1;
        }
        let end = expected - 1;
        let head = head.ok_or(format!("no signed head after entry {end}"))?;
        let hseq = u64_of(&head["sequence"], "head sequence")?;
        if hseq > end || last > end {
            return Err(format!(
                "entries {}..{} missing at the end",
                end + 1,
                hseq.max(last)
            ));
        }
        let hhash = hash32(&head["hash"], "head hash")?;
        if hseq != end || hhash != prev {
            return Err("the signed head is not the export's end".into());
        }
        let mut m = b"attestd-export-head-v1".to_vec();
        m.extend_from_slice(&first.to_be_bytes());
        m.extend_from_slice(&range_prev);
        m.extend_from_slice(&hseq.to_be_bytes());
        m.extend_from_slice(&hhash);
        let at = head["at_ms"].as_i64().ok_or("head at_ms")?;
        m.extend_from_slice(&at.to_be_bytes());
        let sig = unhex(text(&head["signature"], "signature")?)?;
        if !ed25519_ok(raw, &m, &sig) {
            return Err("the signed head does not verify".into());
        }
        Ok((first, last, checkpoints))
    }
}

fn doc_block(name: &str) -> String {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/audit-format.md"))
        .unwrap();
    let mut lines = doc.lines();
    lines
        .by_ref()
        .find(|l| l.starts_with("```") && l.ends_with(name))
        .unwrap_or_else(|| panic!("no {name} block"));
    lines
        .take_while(|l| !l.starts_with("```"))
        .collect::<Vec<_>>()
        .join("\n")
}

crate::both_backends!(an_export_verifies_with_a_verifier_written_from_the_format_document_alone);
async fn an_export_verifies_with_a_verifier_written_from_the_format_document_alone() {
    // The document's own vector first: the verifier reads the document right.
    let vector = doc_block("audit-vector-export");
    let vector_key = doc_block("audit-vector-key");
    assert_eq!(doc_verifier::verify(&vector, &vector_key), Ok((1, 3, 1)));

    let server = TestServer::start_with(Options {
        limits: vec![("checkpoint_interval_secs", "1".into())],
        ..Options::default()
    });
    let unit = enroll_one(&server, "PM200-1", KeyAlg::Ed25519).await;
    let auditor = server.client(Some(AUDITOR_TOKEN)).await;
    // Wait for a checkpoint, then add one more change after it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !audit_entries(&auditor)
        .await
        .iter()
        .any(|e| e.action == attestd_client::core::audit::CHECKPOINT_ACTION)
    {
        assert!(std::time::Instant::now() < deadline, "no checkpoint");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    boot(&server.client(None).await, "PM200-1", &unit, 1)
        .await
        .unwrap();
    let key = std::fs::read_to_string(server.data_dir().join("audit-key.pkcs8.pub")).unwrap();
    let export = attestd_client::audit::export_file(&auditor, 0, 0, |_| {})
        .await
        .unwrap();
    let (first, last, checkpoints) =
        doc_verifier::verify(&export.text, &key).expect("the export verifies by the document");
    assert_eq!((first, last), (1, export.entries));
    assert!(
        last >= 4 && checkpoints >= 1,
        "{last} entries, {checkpoints} checkpoints"
    );

    // The same verifier refuses the cuts the document describes.
    let lines: Vec<&str> = export.text.lines().collect();
    let without = |i: usize| {
        let mut l = lines.clone();
        l.remove(i);
        l.join("\n")
    };
    assert_eq!(
        doc_verifier::verify(&without(1), &key),
        Err("entries 1..1 missing at the start".into())
    );
    assert_eq!(
        doc_verifier::verify(&without(lines.len() - 2), &key),
        Err(format!("entries {last}..{last} missing at the end"))
    );
    // And attestd's verifier agrees on the whole file.
    use base64::Engine as _;
    let spki = base64::engine::general_purpose::STANDARD
        .decode(key.trim())
        .unwrap();
    let public = attestd_client::core::keys::PublicKey::from_spki_der(
        &spki,
        attestd_client::core::Reason::FieldInvalid,
        "key",
    )
    .unwrap();
    let v =
        attestd_client::core::audit::export::verify_export(&export.text, Some(&public)).unwrap();
    assert_eq!(v.range.last, last);

    // A partial export states where it starts and what it chains from.
    let entries = audit_entries(&auditor).await;
    let part = attestd_client::audit::export_file(&auditor, 2, 3, |_| {})
        .await
        .unwrap();
    let range: serde_json::Value = serde_json::from_str(part.text.lines().next().unwrap()).unwrap();
    assert_eq!(range["first"], 3);
    assert_eq!(range["last"], 3);
    assert_eq!(
        range["prev_hash"],
        attestd_client::core::ids::hex(&entries[1].hash)
    );
    assert!(
        matches!(doc_verifier::verify(&part.text, &key), Ok((3, 3, _))),
        "{}",
        part.text
    );
    // Beyond the head: refused, naming the head.
    let err = auditor
        .audit()
        .export_audit(pb::ExportAuditRequest {
            after_sequence: 1_000,
            up_to_sequence: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(
        err.message().contains("beyond the head"),
        "{}",
        err.message()
    );
}
