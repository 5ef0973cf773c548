//! End-to-end: the authorization matrix. Every RPC of the API is called by
//! every role (and by nobody); the allowed ones get past authorization, the
//! others are refused with PERMISSION_DENIED/ROLE_FORBIDDEN or
//! UNAUTHENTICATED/NO_CREDENTIALS. Also checks that no RPC of the API lacks
//! an entry in the matrix.

// Test code: a failed unwrap is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use attestd_server::auth::{Access, Role, ROUTES};
use common::rpc::call;
use common::*;
use prost::Message;
use tonic::Code;

fn token_of(role: Role) -> &'static str {
    match role {
        Role::Station => station_token("line1-prov"),
        Role::Mes => MES_TOKEN,
        Role::HospitalIt => HOSPITAL_TOKEN,
        Role::SecurityAdmin => ADMIN_TOKEN,
        Role::Auditor => AUDITOR_TOKEN,
    }
}

fn refused_by_authorization(s: &tonic::Status) -> bool {
    matches!(
        (s.code(), reason(s).as_str()),
        (Code::PermissionDenied, "ROLE_FORBIDDEN") | (Code::Unauthenticated, "NO_CREDENTIALS")
    )
}

#[test]
fn every_rpc_of_the_api_is_in_the_matrix() {
    let fds = prost_types::FileDescriptorSet::decode(attestd_proto::FILE_DESCRIPTOR_SET).unwrap();
    let mut methods = Vec::new();
    for f in fds.file.iter().filter(|f| f.package() == "attestd.v1") {
        for s in &f.service {
            for m in &s.method {
                methods.push(format!("/attestd.v1.{}/{}", s.name(), m.name()));
            }
        }
    }
    assert!(methods.len() >= 10);
    for m in &methods {
        assert!(
            ROUTES.iter().any(|(p, _)| p == m),
            "{m} has no entry in auth::ROUTES"
        );
    }
    for (p, _) in ROUTES {
        assert!(
            methods.contains(&p.to_string()),
            "{p} is in ROUTES but not in the API"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_times_every_role() {
    let server = TestServer::start();
    let anonymous = server.client(None).await;
    let mut checked = 0;
    for (path, access) in ROUTES {
        // No credentials at all.
        let s = call(&anonymous, path).await;
        match access {
            Access::Public => assert!(
                !refused_by_authorization(&s),
                "{path} is public but was refused: {s:?}"
            ),
            Access::Roles(_) => assert_eq!(
                (s.code(), reason(&s).as_str()),
                (Code::Unauthenticated, "NO_CREDENTIALS"),
                "{path} without a token"
            ),
        }
        for role in Role::ALL {
            let c = anonymous.with_token(Some(token_of(role))).unwrap();
            let s = call(&c, path).await;
            let allowed = match access {
                Access::Public => true,
                Access::Roles(roles) => roles.contains(&role),
            };
            if allowed {
                assert!(
                    !refused_by_authorization(&s),
                    "{path} as {}: allowed but refused: {s:?}",
                    role.as_str()
                );
            } else {
                assert_eq!(
                    (s.code(), reason(&s).as_str()),
                    (Code::PermissionDenied, "ROLE_FORBIDDEN"),
                    "{path} as {} must be refused",
                    role.as_str()
                );
            }
            checked += 1;
        }
    }
    assert_eq!(checked, ROUTES.len() * Role::ALL.len());
    // Nothing the matrix walk sent was stored.
    assert_eq!(server.stored(), (0, 0, 0, 0));
}
