//! The Store contract as tests every backend runs (feature `conformance`).
//!
//! Each clause is one property a backend must keep, written against
//! `Arc<dyn Store>` and nothing else, so sled and PostgreSQL are held to the
//! same words. A backend's test file instantiates every clause as its own
//! test with [`conformance_tests!`](crate::conformance_tests):
//!
//! ```ignore
//! attestd_store::conformance_tests!(async { Fixture::new().await });
//! ```
//!
//! The expression is evaluated once per test and yields a [`Backend`]: an
//! **empty** store plus whatever must outlive it (a temporary directory, a
//! test database), for example `(Arc<dyn Store>, TempDir)`. After the clause
//! the store is closed, then dropped, then the rest of the fixture. Each
//! test runs on a multi-thread runtime with two workers, so the clauses
//! with concurrent writers (module [`concurrent`]) really run in parallel.
//!
//! Clauses panic on the first broken promise (they are tests); the helpers
//! in [`data`] build the commits they send.

// Test code (the suite is compiled only with the `conformance` feature, for
// backends' test suites): a failed unwrap is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::Store;

pub mod audit;
pub mod baselines;
pub mod batch;
pub mod concurrent;
pub mod data;
pub mod evidence;
pub mod feed;
pub mod fleet;
pub mod history;
pub mod jobs;
pub mod records;
pub mod reprovision;
pub mod units;

/// The runtime the generated tests use, so that a backend's crate needs no
/// tokio features of its own for them.
#[doc(hidden)]
pub use tokio;

/// What a backend's fixture yields: an empty store, and whatever must live
/// as long as the test does. Dropped after the store.
pub trait Backend: Send + 'static {
    /// The store under test.
    fn store(&self) -> Arc<dyn Store>;
}

/// A store and its guard (a temporary directory, a test database), dropped
/// in that order.
impl<G: Send + 'static> Backend for (Arc<dyn Store>, G) {
    fn store(&self) -> Arc<dyn Store> {
        self.0.clone()
    }
}

/// A store that needs nothing kept alive beside it.
impl Backend for Arc<dyn Store> {
    fn store(&self) -> Arc<dyn Store> {
        self.clone()
    }
}

/// Longest a clause may take: a deadlock is a failure, not a hung CI run.
pub const CLAUSE_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs one clause on a fresh backend: builds it, runs the clause, closes
/// the store and drops the fixture.
pub async fn run<B, C, F>(fixture: impl Future<Output = B>, clause: C)
where
    B: Backend,
    C: FnOnce(Arc<dyn Store>) -> F,
    F: Future<Output = ()>,
{
    let backend = fixture.await;
    let store = backend.store();
    if tokio::time::timeout(CLAUSE_TIMEOUT, clause(store.clone()))
        .await
        .is_err()
    {
        panic!("the clause did not finish within {CLAUSE_TIMEOUT:?}");
    }
    store.close().await;
    drop(store);
    drop(backend);
}

/// Instantiates every clause of the contract as its own
/// `#[tokio::test(flavor = "multi_thread", worker_threads = 2)]` test in the
/// calling module. The argument is an expression evaluated once per test
/// that yields a future of a [`Backend`](crate::conformance::Backend), e.g.
/// `async { Fixture::new().await }`. The calling crate names this crate
/// `attestd_store`.
#[macro_export]
macro_rules! conformance_tests {
    ($fixture:expr $(,)?) => {
        $crate::__conformance_tests! { $fixture;
            records::a_station_is_registered_once,
            records::a_record_needs_a_registered_station,
            records::a_duplicate_record_is_answered_as_stored,
            records::station_sequence_must_increase,
            records::one_key_per_unit,
            records::an_enrolled_unit_is_unknown_and_queued_for_appraisal,
            records::a_calibration_record_is_kept_with_the_unit,
            records::a_revoked_station_signs_no_more_records,
            records::revoking_a_station_sweeps_the_units_behind_it,
            records::stations_list_in_id_order_and_page,
            records::records_read_back_in_acceptance_order,
            reprovision::a_station_of_another_model_cannot_reprovision_a_unit,
            reprovision::changing_model_or_hardware_needs_supersedes_from_a_rekey_station,
            reprovision::an_explicit_reprovisioning_is_applied_and_audited,
            reprovision::a_rekey_moves_the_key_index_and_the_station_link,
            evidence::a_stale_revision_conflicts_and_writes_nothing,
            evidence::deferred_evidence_needs_a_higher_bootcount,
            evidence::the_same_evidence_is_stored_once,
            evidence::a_lower_bootcount_keeps_the_high_water_mark,
            evidence::evidence_needs_the_enrolled_key,
            evidence::evidence_reads_back_whole,
            units::counters_follow_every_status_change,
            units::a_reappraisal_clears_the_mark_unless_it_conflicts,
            units::the_due_index_follows_the_next_check,
            units::a_flag_and_its_verdict_are_one_write,
            units::a_revoked_unit_stays_revoked,
            units::a_decision_is_stored_only_on_the_state_it_rested_on,
            units::a_decision_after_a_flag_or_a_station_revocation_is_decided_again,
            units::an_assignment_moves_the_unit_between_tenants,
            units::a_concession_is_kept_with_the_unit,
            history::history_is_in_acceptance_order_and_pages,
            history::a_serial_prefix_is_another_serial,
            history::a_page_token_not_issued_is_refused,
            baselines::baseline_versions_must_increase,
            baselines::a_baseline_activates_now_or_when_due,
            baselines::a_new_active_baseline_makes_older_decisions_stale,
            baselines::activation_opens_a_sweep_of_the_model,
            baselines::a_revoked_digest_opens_a_sweep_of_the_units_reporting_it,
            baselines::a_sweep_advances_by_its_cursor,
            baselines::a_sweep_reopened_during_a_round_is_not_closed_by_it,
            baselines::baselines_list_newest_first_and_page,
            fleet::list_devices_returns_exactly_the_matching_units_in_index_order,
            fleet::list_devices_pages_without_gaps_or_repeats,
            fleet::list_devices_keeps_its_budget_and_continues,
            fleet::the_summary_counts_by_group_and_tenant,
            fleet::counts_follow_what_was_stored,
            feed::the_change_feed_is_gapless_and_ordered,
            feed::trim_changes_keeps_the_newest,
            audit::the_audit_chain_verifies,
            audit::every_change_leaves_one_audit_entry_and_a_refusal_none,
            audit::the_last_checkpoint_is_the_newest_checkpoint_entry,
            batch::a_batch_answers_each_write_as_alone,
            batch::a_batch_sees_the_writes_before_it,
            batch::a_batch_leaves_one_audit_entry_per_applied_write,
            jobs::a_nonce_is_used_once_by_its_serial,
            jobs::outstanding_nonces_are_bounded_per_serial,
            jobs::a_challenge_is_issued_to_an_enrolled_unit_only,
            jobs::the_unit_context_is_what_the_single_reads_say,
            jobs::a_lease_is_held_by_its_taker_until_it_expires,
            jobs::a_pinned_setting_answers_its_value,
            jobs::a_write_completes_while_another_is_announced,
            jobs::writes_after_close_fail_shutting_down,
            concurrent::the_audit_head_is_in_the_chain_while_others_append,
            concurrent::concurrent_evidence_keeps_counters_equal_to_a_recount,
            concurrent::a_stale_revision_never_applies_twice,
            concurrent::concurrent_status_changes_feed_a_gapless_ordered_stream,
            concurrent::a_nonce_used_concurrently_is_accepted_once,
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_tests {
    ($fixture:expr; $($module:ident :: $clause:ident),* $(,)?) => {
        $(
            #[$crate::conformance::tokio::test(
                flavor = "multi_thread",
                worker_threads = 2,
                crate = "attestd_store::conformance::tokio"
            )]
            async fn $clause() {
                $crate::conformance::run($fixture, $crate::conformance::$module::$clause).await;
            }
        )*
    };
}
