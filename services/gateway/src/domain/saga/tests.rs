//! The saga against a model of the world (a TigerBeetle-like ledger, a channel that remembers its
//! decisions, an idempotent settlement), crashed at every point of the live run and of the
//! recovery runs, with N and N-1 revisions mixed. After recovery every payment must be final and
//! the world must agree with it.

use std::collections::HashSet;

use super::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hold {
    Pending,
    Posted,
    Voided,
    Expired,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Decision {
    Approved,
    Declined,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ChannelMode {
    Approve,
    Decline,
    Outage,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RoutingMode {
    Up,
    NoRoute,
    Down,
}

#[derive(Clone, Debug)]
struct World {
    routing: RoutingMode,
    channel_mode: ChannelMode,
    hold: Option<Hold>,
    post_created: bool,
    fee_created: bool,
    void_created: bool,
    failed_ids: HashSet<&'static str>,
    charge: Option<Decision>,
    charge_calls: u32,
    refunded: bool,
    items: HashSet<&'static str>,
}

impl World {
    fn new(routing: RoutingMode, channel_mode: ChannelMode) -> Self {
        Self {
            routing,
            channel_mode,
            hold: None,
            post_created: false,
            fee_created: false,
            void_created: false,
            failed_ids: HashSet::new(),
            charge: None,
            charge_calls: 0,
            refunded: false,
            items: HashSet::new(),
        }
    }

    /// Performs `action` the way the services would; `Err(())` is a transient failure.
    fn perform(&mut self, action: Action) -> Result<Outcome, ()> {
        Ok(match action {
            Action::Route => match self.routing {
                RoutingMode::Up => Outcome::Routed {
                    channel_id: "unionpay".into(),
                    fee: 12,
                },
                RoutingMode::NoRoute => Outcome::NoRoute {
                    reason: "currency JPY".into(),
                },
                RoutingMode::Down => return Err(()),
            },
            Action::Hold => {
                if self.failed_ids.contains("hold") {
                    return Ok(Outcome::HoldRejected {
                        code: "id_already_failed".into(),
                    });
                }
                if self.hold.is_none() {
                    self.hold = Some(Hold::Pending);
                }
                Outcome::Held
            }
            Action::Charge => {
                self.charge_calls += 1;
                let decided = match (self.charge, self.channel_mode) {
                    (_, ChannelMode::Outage) => return Err(()),
                    (Some(d), _) => d,
                    (None, ChannelMode::Approve) => Decision::Approved,
                    (None, ChannelMode::Decline) => Decision::Declined,
                };
                self.charge = Some(decided);
                decision_outcome(decided)
            }
            Action::ResolveCharge => match self.charge {
                None => Outcome::NotCharged,
                Some(d) => decision_outcome(d),
            },
            Action::Post => {
                if self.post_created {
                    return Ok(Outcome::Posted);
                }
                if self.failed_ids.contains("post") {
                    return Ok(Outcome::PostRejected {
                        code: "id_already_failed".into(),
                    });
                }
                match self.hold {
                    Some(Hold::Pending) => {
                        self.hold = Some(Hold::Posted);
                        self.post_created = true;
                        self.fee_created = true;
                        Outcome::Posted
                    }
                    Some(Hold::Posted) => panic!("hold posted by someone else"),
                    Some(Hold::Voided | Hold::Expired) | None => {
                        self.failed_ids.insert("post");
                        Outcome::PostRejected {
                            code: "pending_transfer_expired".into(),
                        }
                    }
                }
            }
            Action::Void => {
                if self.void_created || self.failed_ids.contains("void") {
                    return Ok(Outcome::Voided);
                }
                match self.hold {
                    Some(Hold::Pending) => {
                        self.hold = Some(Hold::Voided);
                        self.void_created = true;
                    }
                    Some(Hold::Posted) => panic!("voiding a posted hold: the saga both charged and declined"),
                    Some(Hold::Voided) => {}
                    Some(Hold::Expired) | None => {
                        self.failed_ids.insert("void");
                    }
                }
                Outcome::Voided
            }
            Action::RecordCleared => {
                self.items.insert("payment");
                Outcome::Recorded
            }
            Action::CompensateCharge => {
                assert_eq!(
                    self.charge,
                    Some(Decision::Approved),
                    "compensating a charge that was not approved"
                );
                self.refunded = true;
                Outcome::Compensated
            }
            Action::Abandon => Outcome::Abandoned,
            Action::Finish => Outcome::Finished,
            Action::Nothing => panic!("performed Nothing"),
        })
    }

    /// The ledger's timeout fires.
    fn expire_hold(&mut self) {
        if self.hold == Some(Hold::Pending) {
            self.hold = Some(Hold::Expired);
        }
    }
}

fn decision_outcome(d: Decision) -> Outcome {
    match d {
        Decision::Approved => Outcome::Approved {
            reference: "ref-1".into(),
        },
        Decision::Declined => Outcome::Declined {
            code: "insufficient_funds".into(),
        },
    }
}

/// Where a run stops: before the call of its n-th action, after the call but before persisting,
/// or never.
#[derive(Clone, Copy, Debug)]
enum Crash {
    Never,
    BeforeCall(usize),
    BeforePersist(usize),
}

/// Drives the saga until final, a transient failure, or the crash. Returns whether it crashed.
fn run(db: &mut SagaState, world: &mut World, mode: Mode, revision: Revision, crash: Crash) -> bool {
    for n in 0.. {
        let action = next_action(db, mode);
        if action == Action::Nothing {
            return false;
        }
        if matches!(crash, Crash::BeforeCall(k) if k == n) {
            return true;
        }
        let Ok(outcome) = world.perform(action) else {
            return false;
        };
        if matches!(crash, Crash::BeforePersist(k) if k == n) {
            return true;
        }
        *db = apply(db, outcome.clone(), revision)
            .unwrap_or_else(|e| panic!("{e} (action {action:?}, mode {mode:?})"));
        assert!(n < 20, "saga does not terminate");
    }
    unreachable!()
}

fn crashes() -> Vec<Crash> {
    let mut all = vec![Crash::Never];
    for n in 0..8 {
        all.push(Crash::BeforeCall(n));
        all.push(Crash::BeforePersist(n));
    }
    all
}

fn check_agreement(db: &SagaState, world: &World, context: &str) {
    assert_eq!(db.step, Step::Done, "{context}: not final: {db:?}");
    assert_ne!(
        world.hold,
        Some(Hold::Pending),
        "{context}: a hold is left pending: {db:?}"
    );
    match db.status {
        Status::Succeeded => {
            assert!(
                world.post_created && world.fee_created,
                "{context}: succeeded without the post"
            );
            assert_eq!(
                world.items.len(),
                1,
                "{context}: succeeded without exactly one settlement item"
            );
            assert_eq!(
                world.charge,
                Some(Decision::Approved),
                "{context}: succeeded without an approval"
            );
            assert!(!world.refunded, "{context}: succeeded but refunded");
            assert!(db.failure_reason.is_empty());
            assert_eq!(db.channel_reference, "ref-1");
        }
        Status::Failed => {
            assert!(
                !world.post_created && !world.fee_created,
                "{context}: failed but posted"
            );
            assert!(
                world.items.is_empty(),
                "{context}: failed but has a settlement item"
            );
            assert!(
                world.charge != Some(Decision::Approved) || world.refunded,
                "{context}: failed but the channel kept the money: {db:?}"
            );
            assert!(
                !db.failure_reason.is_empty(),
                "{context}: failed without a reason"
            );
        }
        Status::Pending => unreachable!(),
    }
}

#[test]
fn every_crash_point_of_live_and_recovery_runs_ends_final_and_consistent() {
    let revisions = [Revision::V1, Revision::V2];
    let mut runs = 0;
    for routing in [RoutingMode::Up, RoutingMode::NoRoute, RoutingMode::Down] {
        for channel in [ChannelMode::Approve, ChannelMode::Decline, ChannelMode::Outage] {
            for expire_before_recovery in [false, true] {
                for live_rev in revisions {
                    for rec_rev in revisions {
                        for live_crash in crashes() {
                            for rec_crash in crashes() {
                                let mut world = World::new(routing, channel);
                                let mut db = SagaState::accepted();
                                run(&mut db, &mut world, Mode::Live, live_rev, live_crash);
                                // The outage ends and routing comes back; the hold may have timed out.
                                world.channel_mode = ChannelMode::Approve;
                                world.routing = RoutingMode::Up;
                                if expire_before_recovery {
                                    world.expire_hold();
                                }
                                run(&mut db, &mut world, Mode::Recovery, rec_rev, rec_crash);
                                // A second replica finishes what the crashed recovery left.
                                let crashed_again =
                                    run(&mut db, &mut world, Mode::Recovery, live_rev, Crash::Never);
                                assert!(!crashed_again);
                                let context = format!(
                                    "routing {routing:?}, channel {channel:?}, expire {expire_before_recovery}, \
                                     live {live_rev:?} {live_crash:?}, recovery {rec_rev:?} {rec_crash:?}"
                                );
                                check_agreement(&db, &world, &context);
                                assert!(world.charge_calls <= 1 || channel == ChannelMode::Outage);
                                runs += 1;
                            }
                        }
                    }
                }
            }
        }
    }
    assert!(runs > 10_000, "only {runs} runs");
}

#[test]
fn live_happy_paths() {
    for (channel, status, reason) in [
        (ChannelMode::Approve, Status::Succeeded, ""),
        (
            ChannelMode::Decline,
            Status::Failed,
            "declined:insufficient_funds",
        ),
    ] {
        let mut world = World::new(RoutingMode::Up, channel);
        let mut db = SagaState::accepted();
        assert!(!run(&mut db, &mut world, Mode::Live, Revision::V2, Crash::Never));
        assert_eq!(
            (db.step, db.status, db.failure_reason.as_str()),
            (Step::Done, status, reason)
        );
        assert_eq!((db.channel_id.as_str(), db.fee), ("unionpay", 12));
    }
}

#[test]
fn no_route_fails_without_touching_the_ledger() {
    let mut world = World::new(RoutingMode::NoRoute, ChannelMode::Approve);
    let mut db = SagaState::accepted();
    run(&mut db, &mut world, Mode::Live, Revision::V2, Crash::Never);
    assert_eq!(
        (db.status, db.failure_reason.as_str()),
        (Status::Failed, "no_route:currency_jpy")
    );
    assert_eq!(world.hold, None);
}

#[test]
fn a_channel_outage_leaves_the_payment_held_for_recovery_which_never_charges() {
    let mut world = World::new(RoutingMode::Up, ChannelMode::Outage);
    let mut db = SagaState::accepted();
    run(&mut db, &mut world, Mode::Live, Revision::V2, Crash::Never);
    assert_eq!((db.step, db.status), (Step::Held, Status::Pending));
    world.channel_mode = ChannelMode::Approve;
    run(&mut db, &mut world, Mode::Recovery, Revision::V2, Crash::Never);
    assert_eq!(
        (db.status, db.failure_reason.as_str()),
        (Status::Failed, "interrupted:not_charged")
    );
    assert_eq!(world.charge, None);
    assert_eq!(world.hold, Some(Hold::Voided));
}

#[test]
fn an_approved_charge_whose_hold_expired_is_refunded_at_the_channel() {
    let mut world = World::new(RoutingMode::Up, ChannelMode::Approve);
    let mut db = SagaState::accepted();
    // Crash right after the charge was approved, before persisting CHARGED (action 2 = charge).
    assert!(run(
        &mut db,
        &mut world,
        Mode::Live,
        Revision::V2,
        Crash::BeforePersist(2)
    ));
    world.expire_hold();
    run(&mut db, &mut world, Mode::Recovery, Revision::V2, Crash::Never);
    assert_eq!(db.status, Status::Failed);
    assert!(
        db.failure_reason.starts_with("hold_expired:"),
        "{}",
        db.failure_reason
    );
    assert!(world.refunded);
}

#[test]
fn every_step_and_outcome_pair_is_decided() {
    let outcomes = [
        Outcome::Routed {
            channel_id: "c".into(),
            fee: 1,
        },
        Outcome::NoRoute { reason: "r".into() },
        Outcome::RoutingUnavailable,
        Outcome::Held,
        Outcome::HoldRejected { code: "x".into() },
        Outcome::Approved {
            reference: "r".into(),
        },
        Outcome::Declined { code: "d".into() },
        Outcome::NotCharged,
        Outcome::Posted,
        Outcome::PostRejected { code: "e".into() },
        Outcome::Voided,
        Outcome::Recorded,
        Outcome::Compensated,
        Outcome::Abandoned,
        Outcome::Finished,
    ];
    let mut accepted = 0;
    for step in Step::ALL {
        for compensating in [false, true] {
            let mut state = SagaState::accepted();
            state.step = step;
            if compensating {
                state.failure_reason = "hold_expired:x".into();
            }
            for outcome in &outcomes {
                for revision in [Revision::V1, Revision::V2] {
                    match apply(&state, outcome.clone(), revision) {
                        Ok(next) => {
                            accepted += 1;
                            // Progress: a final state is never left, and a step never goes back.
                            assert_ne!(step, Step::Done);
                            assert!(
                                next.step.code() > step.code() || next.failure_reason != state.failure_reason,
                                "{step:?} + {outcome:?} made no progress"
                            );
                            assert_eq!(next.status != Status::Pending, next.step == Step::Done);
                        }
                        Err(e) => assert_eq!(e.step, step),
                    }
                }
            }
        }
    }
    assert!(accepted > 20);
    for code in 1..=9 {
        assert_eq!(Step::from_code(code).map(Step::code), Some(code));
    }
    assert_eq!(Step::from_code(0), None);
}
