//! End-to-end: the audit trail. Each state-changing call leaves exactly one
//! entry naming its principal; refusals leave none; the export verifies and
//! any tampering is named at the entry where it happened; after repeated
//! SIGKILLs under load the chain still verifies and every acknowledged
//! change has its entry (and no entry lacks its change).

mod common;

use std::sync::Arc;

use attestd_client::core::audit::{verify_chain, GENESIS};
use attestd_client::core::keys::KeyAlg;
use attestd_client::pb;
use attestd_client::SigningKey;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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
