//! `attestctl evidence challenge | submit | get`: device evidence from the
//! operator's side. attestctl does not sign evidence (only a unit's own key
//! can): `challenge` fetches the single-use nonce a unit (or its test double)
//! signs into its token's eat_nonce claim, and `submit` sends the signed
//! COSE_Sign1 file as the unit would. Deferred evidence carries no nonce.

use anyhow::{bail, Context};
use attestd_client::{pb, Client};

use crate::cli::EvidenceCmd;
use crate::show::{self, Out};

/// The largest evidence attestd accepts (16 KiB); larger files are refused
/// here before they are read whole or sent.
const MAX_EVIDENCE: u64 = 16 * 1024;

pub(crate) async fn run(c: &Client, cmd: EvidenceCmd, out: &Out) -> anyhow::Result<()> {
    match cmd {
        EvidenceCmd::Challenge { serial } => {
            let r = c
                .device()
                .get_challenge(pb::GetChallengeRequest { serial })
                .await?
                .into_inner();
            out.message(&r, show::challenge)
        }
        EvidenceCmd::Submit { file } => {
            let len = std::fs::metadata(&file)
                .with_context(|| format!("reading {}", file.display()))?
                .len();
            if len > MAX_EVIDENCE {
                bail!(
                    "{}: {len} bytes; evidence is at most {MAX_EVIDENCE} bytes",
                    file.display()
                );
            }
            let evidence =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let r = c
                .device()
                .submit_evidence(pb::SubmitEvidenceRequest {
                    evidence,
                    ..Default::default()
                })
                .await?
                .into_inner();
            out.message(&r, show::evidence_receipt)
        }
        EvidenceCmd::Get {
            evidence_id,
            out: path,
        } => {
            let e = c
                .fleet()
                .get_evidence(pb::GetEvidenceRequest { evidence_id })
                .await?
                .into_inner();
            if let Some(p) = &path {
                std::fs::write(p, &e.cose_sign1)
                    .with_context(|| format!("writing {}", p.display()))?;
            }
            out.message(&e, show::stored_evidence)
        }
    }
}
