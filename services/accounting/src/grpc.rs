//! Thin `LedgerService` implementation: validate → group commit / store → map.

use std::time::Duration;

use payplane_proto::accounting::v1::{self as pb, ledger_service_server::LedgerService};
use tonic::{Request, Response, Status};

use crate::{
    convert,
    error::Error,
    metrics::LedgerMetrics,
    store::{Committer, InvariantReport, Job, JobResult, Store, ViolationKind},
};

#[derive(Clone)]
pub struct LedgerApi {
    pub store: Store,
    pub committer: Committer,
    pub expiry_grace: Duration,
    pub metrics: LedgerMetrics,
}

fn unexpected() -> Status {
    Error::Database("committer answered with the wrong kind of result".into()).into()
}

#[tonic::async_trait]
impl LedgerService for LedgerApi {
    async fn create_accounts(
        &self,
        request: Request<pb::CreateAccountsRequest>,
    ) -> Result<Response<pb::CreateAccountsResponse>, Status> {
        let events = convert::account_events(request.get_ref()).map_err(Error::from)?;
        if events.is_empty() {
            return Ok(Response::new(pb::CreateAccountsResponse::default()));
        }
        let JobResult::Accounts(results) = self.committer.submit(Job::Accounts(events)).await? else {
            return Err(unexpected());
        };
        let errors = results
            .into_iter()
            .map(|(index, r)| pb::CreateAccountError {
                index,
                result: r as i32,
            })
            .collect();
        Ok(Response::new(pb::CreateAccountsResponse { errors }))
    }

    async fn create_transfers(
        &self,
        request: Request<pb::CreateTransfersRequest>,
    ) -> Result<Response<pb::CreateTransfersResponse>, Status> {
        let events = convert::transfer_events(request.get_ref()).map_err(Error::from)?;
        if events.is_empty() {
            return Ok(Response::new(pb::CreateTransfersResponse::default()));
        }
        let JobResult::Transfers(results) = self.committer.submit(Job::Transfers(events)).await? else {
            return Err(unexpected());
        };
        let errors = results
            .into_iter()
            .map(|(index, r)| pb::CreateTransferError {
                index,
                result: r as i32,
            })
            .collect();
        Ok(Response::new(pb::CreateTransfersResponse { errors }))
    }

    async fn lookup_accounts(
        &self,
        request: Request<pb::LookupAccountsRequest>,
    ) -> Result<Response<pb::LookupAccountsResponse>, Status> {
        let ids = convert::lookup_ids(&request.get_ref().ids).map_err(Error::from)?;
        let accounts = self.store.lookup_accounts(&ids).await.map_err(Error::from)?;
        Ok(Response::new(pb::LookupAccountsResponse {
            accounts: accounts.iter().map(convert::account_to_pb).collect(),
        }))
    }

    async fn lookup_transfers(
        &self,
        request: Request<pb::LookupTransfersRequest>,
    ) -> Result<Response<pb::LookupTransfersResponse>, Status> {
        let ids = convert::lookup_ids(&request.get_ref().ids).map_err(Error::from)?;
        let transfers = self.store.lookup_transfers(&ids).await.map_err(Error::from)?;
        Ok(Response::new(pb::LookupTransfersResponse {
            transfers: transfers.iter().map(convert::transfer_to_pb).collect(),
        }))
    }

    async fn get_account_transfers(
        &self,
        request: Request<pb::GetAccountTransfersRequest>,
    ) -> Result<Response<pb::GetAccountTransfersResponse>, Status> {
        let (filter, after) = convert::filter(request.get_ref().filter.as_ref()).map_err(Error::from)?;
        let page = self
            .store
            .account_transfers(&filter, after)
            .await
            .map_err(Error::from)?;
        Ok(Response::new(pb::GetAccountTransfersResponse {
            transfers: page.items.iter().map(convert::transfer_to_pb).collect(),
            next_page_token: convert::page_token(page.next_after),
        }))
    }

    async fn get_account_balances(
        &self,
        request: Request<pb::GetAccountBalancesRequest>,
    ) -> Result<Response<pb::GetAccountBalancesResponse>, Status> {
        let (filter, after) = convert::filter(request.get_ref().filter.as_ref()).map_err(Error::from)?;
        let page = self
            .store
            .account_balances(&filter, after)
            .await
            .map_err(Error::from)?;
        Ok(Response::new(pb::GetAccountBalancesResponse {
            balances: page.items.iter().map(convert::balance_to_pb).collect(),
            next_page_token: convert::page_token(page.next_after),
        }))
    }

    async fn check_invariants(
        &self,
        request: Request<pb::CheckInvariantsRequest>,
    ) -> Result<Response<pb::CheckInvariantsResponse>, Status> {
        let ledger = request.get_ref().ledger;
        let report = self
            .store
            .check_invariants((ledger != 0).then_some(ledger), self.expiry_grace)
            .await
            .map_err(Error::from)?;
        if ledger == 0 {
            self.metrics.record_check(&report);
        }
        Ok(Response::new(report_to_pb(&report)))
    }

    async fn repair_balances(
        &self,
        request: Request<pb::RepairBalancesRequest>,
    ) -> Result<Response<pb::RepairBalancesResponse>, Status> {
        let (ledger, reason) = convert::repair_request(request.get_ref()).map_err(Error::from)?;
        let dry_run = request.get_ref().dry_run;
        let report = self
            .store
            .repair_balances(ledger, &reason, dry_run)
            .await
            .map_err(Error::from)?;
        if !dry_run && report.repaired_count > 0 {
            tracing::warn!(repaired = report.repaired_count, ?ledger, %reason, "balances rewritten from the transfers");
            // The invariant gauge (the rollout's guard) shows the repaired ledger now, not at the
            // next interval.
            let check = self
                .store
                .check_invariants(None, self.expiry_grace)
                .await
                .map_err(Error::from)?;
            self.metrics.record_check(&check);
        }
        Ok(Response::new(convert::repair_to_pb(&report)))
    }
}

fn saturate(v: u128) -> u64 {
    u64::try_from(v).unwrap_or(u64::MAX)
}

pub fn report_to_pb(r: &InvariantReport) -> pb::CheckInvariantsResponse {
    pb::CheckInvariantsResponse {
        ok: r.violation_count == 0,
        ledgers: r
            .ledgers
            .iter()
            .map(|t| pb::LedgerTotals {
                ledger: t.ledger,
                debits_pending: saturate(t.debits_pending),
                debits_posted: saturate(t.debits_posted),
                credits_pending: saturate(t.credits_pending),
                credits_posted: saturate(t.credits_posted),
                account_count: t.account_count,
                transfer_count: t.transfer_count,
            })
            .collect(),
        violations: r
            .violations
            .iter()
            .map(|v| pb::InvariantViolation {
                kind: match v.kind {
                    ViolationKind::LedgerUnbalanced => pb::InvariantViolationKind::LedgerUnbalanced,
                    ViolationKind::AccountBalanceMismatch => {
                        pb::InvariantViolationKind::AccountBalanceMismatch
                    }
                    ViolationKind::PendingTransferExpired => {
                        pb::InvariantViolationKind::PendingTransferExpired
                    }
                    ViolationKind::AccountLimitExceeded => pb::InvariantViolationKind::AccountLimitExceeded,
                } as i32,
                ledger: v.ledger,
                subject_id: v.subject_id.map(convert::id_string).unwrap_or_default(),
                detail: v.detail.clone(),
            })
            .collect(),
        violation_count: r.violation_count,
        checked_at: r.checked_at,
    }
}
