//! Sync groups (keepalived's `vrrp_sync_group`): instances that must change state together,
//! typically the outside and inside address of a router, so traffic never enters one node
//! and leaves through another.
//!
//! keepalived 2.2 semantics (`vrrp_sync.c`, `try_up_instance`, the transition matrix in
//! `vrrp_scheduler.c`):
//! * A member whose master down timer expires only becomes master once every other member
//!   wants to as well (its own timer expired too); until then it stays backup and re-arms.
//!   The last one to get there takes the whole group to master.
//! * A member that steps down from master to backup takes the whole group to backup.
//! * A member that faults takes the whole group to fault (masters send priority 0 first).
//!   The group leaves fault, to backup, only when no member is faulty any more.

use std::time::Duration;

use crate::instance::{Action, Instance, State};
use crate::packet::{self, Advert, DropReason, RxMeta};

/// An [`Action`] of one member of a [`SyncGroup`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GroupAction {
    /// Index of the member in [`SyncGroup::members`].
    pub member: usize,
    /// What that member's caller must do.
    pub action: Action,
}

/// Several [`Instance`]s driven as one sync group.
///
/// The group owns its members; drive them through the group only, with the member index
/// where an input concerns one member. An index out of range is ignored (no actions).
#[derive(Debug, Clone)]
pub struct SyncGroup {
    members: Vec<Instance>,
    state: State,
}

impl SyncGroup {
    /// Groups instances that have not been started yet.
    ///
    /// As in keepalived, members start as master at once only if all of them are address
    /// owners with initial state master; otherwise all start as backup.
    pub fn new(mut members: Vec<Instance>) -> Self {
        if !members.iter().all(Instance::starts_as_master) {
            for member in &mut members {
                member.demote_initial_master();
            }
        }
        Self {
            members,
            state: State::Init,
        }
    }

    /// The members, indexed as in [`GroupAction::member`].
    pub fn members(&self) -> &[Instance] {
        &self.members
    }

    /// The group's state: the state its members are synchronised to.
    pub fn state(&self) -> State {
        self.state
    }

    /// The earliest deadline of any member.
    pub fn next_deadline(&self) -> Option<Duration> {
        self.members
            .iter()
            .filter_map(Instance::next_deadline)
            .min()
    }

    /// Starts every member straight as MASTER (see [`Instance::resume_master`]); falls back
    /// to [`SyncGroup::start`] if any member is faulty.
    pub fn resume_master(&mut self, now: Duration) -> Vec<GroupAction> {
        if self.members.iter().any(Instance::is_faulty) {
            return self.start(now);
        }
        let mut out = Vec::new();
        for i in 0..self.members.len() {
            let actions = self.members[i].resume_master(now);
            push(&mut out, i, actions);
        }
        self.state = State::Master;
        out
    }

    /// Starts every member; all go to FAULT if any is faulty.
    pub fn start(&mut self, now: Duration) -> Vec<GroupAction> {
        let mut out = Vec::new();
        if self.members.iter().any(Instance::is_faulty) {
            for i in 0..self.members.len() {
                let actions = if self.members[i].is_faulty() {
                    self.members[i].start_gated(now, false)
                } else {
                    self.members[i].start_in_group_fault()
                };
                push(&mut out, i, actions);
            }
            self.state = State::Fault;
            return out;
        }
        let all_master = self.members.iter().all(Instance::starts_as_master);
        for i in 0..self.members.len() {
            let actions = self.members[i].start_gated(now, all_master);
            push(&mut out, i, actions);
        }
        self.state = if all_master && !self.members.is_empty() {
            State::Master
        } else {
            State::Backup
        };
        out
    }

    /// Decodes and handles a VRRP message received for `member`.
    pub fn on_packet(
        &mut self,
        now: Duration,
        member: usize,
        msg: &[u8],
        meta: &RxMeta,
    ) -> Result<Vec<GroupAction>, DropReason> {
        let advert = packet::decode(msg, meta)?;
        self.on_advert(now, member, meta, &advert)
    }

    /// Handles an advert received for `member` (see [`Instance::on_advert`]), then moves the
    /// other members if it changed state.
    pub fn on_advert(
        &mut self,
        now: Duration,
        member: usize,
        meta: &RxMeta,
        advert: &Advert,
    ) -> Result<Vec<GroupAction>, DropReason> {
        let mut out = Vec::new();
        let Some(instance) = self.members.get_mut(member) else {
            return Ok(out);
        };
        let before = instance.state();
        let actions = instance.on_advert(now, meta, advert)?;
        push(&mut out, member, actions);
        self.follow(now, member, before, &mut out);
        Ok(out)
    }

    /// Runs every member's due timers.
    pub fn on_timer(&mut self, now: Duration) -> Vec<GroupAction> {
        let mut out = Vec::new();
        for i in 0..self.members.len() {
            if self.members[i].next_deadline().is_none_or(|at| at > now) {
                continue;
            }
            let before = self.members[i].state();
            let allow = self.may_become_master(i);
            let actions = self.members[i].on_timer_gated(now, allow);
            push(&mut out, i, actions);
            self.follow(now, i, before, &mut out);
        }
        out
    }

    /// Sets or clears `member`'s own fault; see the module documentation for the group rules.
    pub fn set_fault(&mut self, now: Duration, member: usize, fault: bool) -> Vec<GroupAction> {
        let mut out = Vec::new();
        let Some(instance) = self.members.get(member) else {
            return out;
        };
        if instance.is_faulty() == fault {
            return out;
        }
        if fault {
            let actions = if instance.state() == State::Fault || instance.state() == State::Init {
                // Already held in FAULT by the group (or not started): only record it.
                self.members[member].set_fault_flag(true);
                Vec::new()
            } else {
                self.members[member].set_fault_gated(now, true, false)
            };
            push(&mut out, member, actions);
            if self.state != State::Init {
                for j in 0..self.members.len() {
                    if j != member {
                        let actions = self.members[j].force_fault(now);
                        push(&mut out, j, actions);
                    }
                }
                self.state = State::Fault;
            }
            return out;
        }

        let others_faulty = self
            .members
            .iter()
            .enumerate()
            .any(|(j, m)| j != member && m.is_faulty());
        if others_faulty || self.state == State::Init {
            self.members[member].set_fault_flag(false);
            return out;
        }
        let allow = self.may_become_master(member);
        let actions = self.members[member].set_fault_gated(now, false, allow);
        push(&mut out, member, actions);
        for j in 0..self.members.len() {
            if j != member && self.members[j].state() == State::Fault {
                let actions = self.members[j].force_backup(now);
                push(&mut out, j, actions);
            }
        }
        self.state = State::Backup;
        if self.members[member].state() == State::Master {
            self.sync_master(now, member, &mut out);
        }
        out
    }

    /// Sets `member`'s tracking priority delta (see [`Instance::set_priority_delta`]).
    pub fn set_priority_delta(
        &mut self,
        now: Duration,
        member: usize,
        delta: i32,
    ) -> Vec<GroupAction> {
        let mut out = Vec::new();
        if let Some(instance) = self.members.get_mut(member) {
            let actions = instance.set_priority_delta(now, delta);
            push(&mut out, member, actions);
        }
        out
    }

    /// Shuts every member down.
    pub fn shutdown(&mut self, now: Duration) -> Vec<GroupAction> {
        let mut out = Vec::new();
        for i in 0..self.members.len() {
            let actions = self.members[i].shutdown(now);
            push(&mut out, i, actions);
        }
        self.state = State::Init;
        out
    }

    /// keepalived's `vrrp_sync_can_goto_master`: the group is master already, or everyone
    /// else wants to be.
    fn may_become_master(&self, member: usize) -> bool {
        self.state == State::Master
            || self
                .members
                .iter()
                .enumerate()
                .all(|(j, m)| j == member || m.wants_master())
    }

    /// Applies the transition matrix after `member` moved from `before`.
    fn follow(&mut self, now: Duration, member: usize, before: State, out: &mut Vec<GroupAction>) {
        let after = self.members[member].state();
        if after == State::Master && self.state != State::Master {
            self.sync_master(now, member, out);
        } else if before == State::Master && after == State::Backup {
            for j in 0..self.members.len() {
                if j != member {
                    let actions = self.members[j].force_backup(now);
                    push(out, j, actions);
                }
            }
            self.state = State::Backup;
        }
    }

    fn sync_master(&mut self, now: Duration, member: usize, out: &mut Vec<GroupAction>) {
        for j in 0..self.members.len() {
            if j != member {
                let actions = self.members[j].force_master(now);
                push(out, j, actions);
            }
        }
        self.state = State::Master;
    }
}

fn push(out: &mut Vec<GroupAction>, member: usize, actions: Vec<Action>) {
    out.extend(
        actions
            .into_iter()
            .map(|action| GroupAction { member, action }),
    );
}
