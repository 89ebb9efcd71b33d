//! The review workflow: a patch's states, the actions on it, and who may take each, as
//! one table, plus the state computed from the sign-offs on the current revision.
//!
//! A patch is stored as a *phase* (draft, open, rejected, withdrawn); while open, its
//! state follows from the sign-offs on its current revision: a reject that has not been
//! withdrawn means changes requested; enough approvals from people other than the author
//! and an eligible patch mean approved; otherwise in review. Sign-offs belong to one
//! revision, so a new revision starts the count again. Everything here is pure: the web
//! layer loads the facts, asks, and stores the result.

use crate::eligibility::Policy;
use crate::{Action, RevisionNumber, Role, SignOffKind, State, UserId, Verdict};
use serde::{Deserialize, Serialize};

/// What is stored about where a patch is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Being prepared by its author.
    Draft,
    /// Submitted for review.
    Open,
    /// Turned down for good.
    Rejected,
    /// Taken back by its author.
    Withdrawn,
}

/// A sign-off, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignOff {
    /// Who.
    pub user: UserId,
    /// On which revision.
    pub revision: RevisionNumber,
    /// Approve or reject.
    pub verdict: Verdict,
    /// Withdrawn by its author since.
    pub withdrawn: bool,
}

/// The state from the phase and the sign-offs.
pub fn state(
    phase: Phase,
    author: UserId,
    current_revision: RevisionNumber,
    sign_offs: &[SignOff],
    eligible: bool,
    policy: &Policy,
) -> State {
    match phase {
        Phase::Draft => return State::Draft,
        Phase::Rejected => return State::Rejected,
        Phase::Withdrawn => return State::Withdrawn,
        Phase::Open => {}
    }
    let current = sign_offs
        .iter()
        .filter(|s| s.revision == current_revision && !s.withdrawn);
    if current.clone().any(|s| s.verdict == Verdict::Reject) {
        return State::ChangesRequested;
    }
    let mut approvers: Vec<UserId> = current
        .filter(|s| s.verdict == Verdict::Approve && s.user != author)
        .map(|s| s.user)
        .collect();
    approvers.sort_unstable();
    approvers.dedup();
    if approvers.len() >= policy.approvals_required as usize && eligible {
        State::Approved
    } else {
        State::InReview
    }
}

/// Who the actor must be besides holding a role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    /// The patch's author.
    Author,
    /// Anyone but the author (four eyes).
    NotAuthor,
    /// Anyone holding the role.
    Anyone,
}

/// One row of the table: an action, the roles that may take it, who among them, and the
/// states it applies in.
struct Rule {
    action: Action,
    roles: &'static [Role],
    who: Who,
    states: &'static [State],
}

const OPEN: &[State] = &[State::InReview, State::ChangesRequested, State::Approved];
/// Not yet closed: a draft or open.
const ACTIVE: &[State] = &[
    State::Draft,
    State::InReview,
    State::ChangesRequested,
    State::Approved,
];

/// The whole workflow. Auditors appear nowhere: they read, and never act.
/// The role a sign-off of `kind` is made in: the one role the rules let make it
/// (evidence names it beside the person).
pub fn signing_role(kind: SignOffKind) -> Role {
    let action = match kind {
        SignOffKind::Approve => Action::Approve,
        SignOffKind::Reject => Action::Reject,
        SignOffKind::Exception => Action::SignException,
    };
    RULES
        .iter()
        .find(|rule| rule.action == action)
        .and_then(|rule| rule.roles.first().copied())
        .unwrap_or(Role::Reviewer)
}

const RULES: &[Rule] = &[
    Rule {
        action: Action::Submit,
        roles: &[Role::Author],
        who: Who::Author,
        states: &[State::Draft],
    },
    Rule {
        action: Action::UploadRevision,
        roles: &[Role::Author],
        who: Who::Author,
        states: ACTIVE,
    },
    Rule {
        action: Action::Approve,
        roles: &[Role::Reviewer],
        who: Who::NotAuthor,
        states: OPEN,
    },
    Rule {
        action: Action::Reject,
        roles: &[Role::Reviewer],
        who: Who::NotAuthor,
        states: OPEN,
    },
    Rule {
        action: Action::WithdrawSignOff,
        roles: &[Role::Reviewer],
        who: Who::NotAuthor,
        states: OPEN,
    },
    Rule {
        action: Action::SignException,
        roles: &[Role::SecurityOfficer],
        who: Who::NotAuthor,
        states: OPEN,
    },
    Rule {
        action: Action::Comment,
        roles: &[
            Role::Author,
            Role::Reviewer,
            Role::SecurityOfficer,
            Role::ReleaseManager,
        ],
        who: Who::Anyone,
        states: ACTIVE,
    },
    Rule {
        action: Action::Decline,
        roles: &[Role::SecurityOfficer, Role::Admin],
        who: Who::NotAuthor,
        states: OPEN,
    },
    Rule {
        action: Action::Withdraw,
        roles: &[Role::Author],
        who: Who::Author,
        states: ACTIVE,
    },
    Rule {
        action: Action::Reopen,
        roles: &[Role::Author],
        who: Who::Author,
        states: &[State::Withdrawn],
    },
];

/// Why an action was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// The actor lacks the role.
    #[error("{action:?} needs the role {needed}")]
    Role {
        /// The action.
        action: Action,
        /// The roles that may, joined.
        needed: String,
    },
    /// Four eyes: the author may not.
    #[error("the author of a patch cannot {0}")]
    OwnPatch(&'static str),
    /// Only the author may.
    #[error("only the patch's author can {0}")]
    NotAuthor(&'static str),
    /// Four eyes on accounts: the actor's role was granted or confirmed by an admin who
    /// wrote this patch (or one of its revisions).
    #[error(
        "four eyes: your {role} role was granted or confirmed by an admin who wrote this \
         patch (or made the account that did), so your sign-off cannot count for it; \
         another {role} must sign off"
    )]
    GrantedByAuthor {
        /// The role, as people name it.
        role: &'static str,
    },
    /// Not in this state.
    #[error("a patch that is {state:?} cannot be {verb}")]
    State {
        /// The state.
        state: State,
        /// The action, as a past participle.
        verb: &'static str,
    },
    /// Withdrawing a sign-off the actor does not have.
    #[error("you have no sign-off on revision {0} to withdraw")]
    NothingToWithdraw(RevisionNumber),
    /// The same sign-off again: it would change nothing but the audit trail.
    #[error("you have already {verb} {on}; withdraw it first to sign off again")]
    AlreadySigned {
        /// What the actor did, as a past participle.
        verb: &'static str,
        /// What on: `revision N` or `this patch`.
        on: String,
    },
    /// An exception on a patch filed as a vulnerability, whose CVSS score decides.
    #[error(
        "this patch is filed as a vulnerability: its CVSS score decides, there is no \
         exception to sign off"
    )]
    NoException,
    /// Asking for reviewers is for the patch's author and release managers.
    #[error("only the patch's author or a release manager can ask for reviewers")]
    NotRequester,
}

/// What else about the patch and the actor decides whether a sign-off applies, besides
/// roles, authorship and state: the page offers and the server takes an action only when
/// both [`allowed`] and [`applies`] say yes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standing {
    /// The current revision.
    pub revision: RevisionNumber,
    /// Filed as a vulnerability: its CVSS score decides eligibility.
    pub vulnerability: bool,
    /// The actor's approval or rejection of the current revision, not withdrawn.
    pub own_verdict: Option<Verdict>,
    /// The actor's exception sign-off, not withdrawn (it holds across revisions).
    pub own_exception: bool,
}

impl Standing {
    /// The standing of `actor` given the patch's sign-offs of each kind.
    pub fn of(
        actor: UserId,
        revision: RevisionNumber,
        vulnerability: bool,
        sign_offs: impl IntoIterator<Item = (UserId, RevisionNumber, SignOffKind, bool)>,
    ) -> Standing {
        let mut standing = Standing {
            revision,
            vulnerability,
            own_verdict: None,
            own_exception: false,
        };
        for (user, on, kind, withdrawn) in sign_offs {
            if user != actor || withdrawn {
                continue;
            }
            match kind {
                SignOffKind::Exception => standing.own_exception = true,
                SignOffKind::Approve if on == revision => {
                    standing.own_verdict = Some(Verdict::Approve)
                }
                SignOffKind::Reject if on == revision => {
                    standing.own_verdict = Some(Verdict::Reject)
                }
                SignOffKind::Approve | SignOffKind::Reject => {}
            }
        }
        standing
    }
}

/// Whether a sign-off action applies to the actor's standing (other actions always do).
pub fn applies(action: Action, standing: &Standing) -> Result<(), Denied> {
    let already = |verb| {
        Err(Denied::AlreadySigned {
            verb,
            on: format!("revision {}", standing.revision),
        })
    };
    match action {
        Action::WithdrawSignOff if standing.own_verdict.is_none() => {
            Err(Denied::NothingToWithdraw(standing.revision))
        }
        Action::Approve if standing.own_verdict == Some(Verdict::Approve) => already("approved"),
        Action::Reject if standing.own_verdict == Some(Verdict::Reject) => already("rejected"),
        Action::SignException if standing.vulnerability => Err(Denied::NoException),
        Action::SignException if standing.own_exception => Err(Denied::AlreadySigned {
            verb: "signed off the exception",
            on: "this patch".into(),
        }),
        _ => Ok(()),
    }
}

fn verb(action: Action) -> (&'static str, &'static str) {
    match action {
        Action::Submit => ("submit it", "submitted"),
        Action::UploadRevision => ("upload a revision", "given a new revision"),
        Action::Approve => ("approve it", "approved"),
        Action::Reject => ("reject it", "rejected"),
        Action::WithdrawSignOff => ("withdraw a sign-off on it", "signed off"),
        Action::SignException => ("sign off its exception", "signed off"),
        Action::Comment => ("comment on it", "commented on"),
        Action::Decline => ("decline it", "declined"),
        Action::Withdraw => ("withdraw it", "withdrawn"),
        Action::Reopen => ("reopen it", "reopened"),
    }
}

/// Whether `roles` held by `actor` allow `action` on a patch by `author` in `state`.
pub fn allowed(
    action: Action,
    actor: UserId,
    roles: &[Role],
    author: UserId,
    state: State,
) -> Result<(), Denied> {
    let Some(rule) = RULES.iter().find(|r| r.action == action) else {
        return Err(Denied::Role {
            action,
            needed: "(none)".into(),
        });
    };
    if !rule.roles.iter().any(|r| roles.contains(r)) {
        return Err(Denied::Role {
            action,
            needed: rule
                .roles
                .iter()
                .map(|r| r.as_str())
                .collect::<Vec<_>>()
                .join(" or "),
        });
    }
    let (infinitive, participle) = verb(action);
    match rule.who {
        Who::Author if actor != author => return Err(Denied::NotAuthor(infinitive)),
        Who::NotAuthor if actor == author => return Err(Denied::OwnPatch(infinitive)),
        _ => {}
    }
    if !rule.states.contains(&state) {
        return Err(Denied::State {
            state,
            verb: participle,
        });
    }
    Ok(())
}

/// Whether `actor` may ask for (or stop asking for) reviewers on a patch by `author` in
/// `state`: its author, or a release manager, while the patch is active. The page offers
/// the control and the server takes the request by this one rule.
pub fn may_request_reviewers(
    actor: UserId,
    roles: &[Role],
    author: UserId,
    state: State,
) -> Result<(), Denied> {
    let writes_it = actor == author && roles.contains(&Role::Author);
    if !writes_it && !roles.contains(&Role::ReleaseManager) {
        return Err(Denied::NotRequester);
    }
    if !ACTIVE.contains(&state) {
        return Err(Denied::State {
            state,
            verb: "given reviewers",
        });
    }
    Ok(())
}

/// Whether a patch waits for `actor`'s review: open, theirs to approve (a reviewer who
/// did not write it), with no verdict of theirs on the current revision. A patch someone
/// asked them to review waits for them in the same way; it is listed first.
pub fn awaits_review_by(
    actor: UserId,
    roles: &[Role],
    author: UserId,
    state: State,
    standing: &Standing,
) -> bool {
    allowed(Action::Approve, actor, roles, author, state).is_ok() && standing.own_verdict.is_none()
}

/// The actions `actor` may take now: what the page offers, no more.
pub fn offered(
    actor: UserId,
    roles: &[Role],
    author: UserId,
    state: State,
    standing: &Standing,
) -> Vec<Action> {
    RULES
        .iter()
        .map(|r| r.action)
        .filter(|&a| allowed(a, actor, roles, author, state).is_ok())
        .filter(|&a| applies(a, standing).is_ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const AUTHOR: UserId = UserId(1);
    const OTHER: UserId = UserId(2);
    const ALL_STATES: [State; 6] = State::ALL;

    fn sign(user: UserId, revision: i64, verdict: Verdict) -> SignOff {
        SignOff {
            user,
            revision: RevisionNumber(revision),
            verdict,
            withdrawn: false,
        }
    }

    #[test]
    fn approval_counts_current_revision_approvals_by_others() {
        let policy = Policy::default();
        let open = |signs: &[SignOff], eligible| {
            state(
                Phase::Open,
                AUTHOR,
                RevisionNumber(2),
                signs,
                eligible,
                &policy,
            )
        };
        assert_eq!(open(&[], true), State::InReview);
        // The author's own approval never counts, even with the reviewer role.
        assert_eq!(
            open(
                &[
                    sign(AUTHOR, 2, Verdict::Approve),
                    sign(OTHER, 2, Verdict::Approve)
                ],
                true
            ),
            State::InReview
        );
        // Approvals on an older revision are outdated.
        assert_eq!(
            open(
                &[
                    sign(UserId(3), 1, Verdict::Approve),
                    sign(OTHER, 2, Verdict::Approve)
                ],
                true
            ),
            State::InReview
        );
        // The same person twice is one approval.
        assert_eq!(
            open(
                &[
                    sign(OTHER, 2, Verdict::Approve),
                    sign(OTHER, 2, Verdict::Approve)
                ],
                true
            ),
            State::InReview
        );
        let two = [
            sign(OTHER, 2, Verdict::Approve),
            sign(UserId(3), 2, Verdict::Approve),
        ];
        assert_eq!(open(&two, true), State::Approved);
        // Not eligible: approved by people, not by the rules.
        assert_eq!(open(&two, false), State::InReview);
        // A reject blocks, until withdrawn or a new revision.
        let mut blocked = two.to_vec();
        blocked.push(sign(UserId(4), 2, Verdict::Reject));
        assert_eq!(open(&blocked, true), State::ChangesRequested);
        blocked[2].withdrawn = true;
        assert_eq!(open(&blocked, true), State::Approved);
        assert_eq!(
            state(
                Phase::Open,
                AUTHOR,
                RevisionNumber(3),
                &[sign(UserId(4), 2, Verdict::Reject)],
                true,
                &policy
            ),
            State::InReview
        );
        assert_eq!(
            state(
                Phase::Withdrawn,
                AUTHOR,
                RevisionNumber(2),
                &two,
                true,
                &policy
            ),
            State::Withdrawn
        );
    }

    #[test]
    fn nobody_approves_their_own_patch_and_auditors_never_act() {
        for state in ALL_STATES {
            // Every role at once, on one's own patch: no approval, no rejection.
            for action in [
                Action::Approve,
                Action::Reject,
                Action::SignException,
                Action::Decline,
            ] {
                assert!(
                    allowed(action, AUTHOR, &Role::ALL, AUTHOR, state).is_err(),
                    "{action:?} own patch in {state:?}"
                );
            }
            for action in RULES.iter().map(|r| r.action) {
                assert!(allowed(action, OTHER, &[Role::Auditor], AUTHOR, state).is_err());
            }
        }
    }

    #[test]
    fn the_table_offers_exactly_these() {
        let fresh = Standing::of(OTHER, RevisionNumber(1), false, []);
        let offered_to =
            |actor, roles: &[Role], state| offered(actor, roles, AUTHOR, state, &fresh);
        assert_eq!(
            offered_to(AUTHOR, &[Role::Author], State::Draft),
            [
                Action::Submit,
                Action::UploadRevision,
                Action::Comment,
                Action::Withdraw
            ]
        );
        assert_eq!(
            offered_to(OTHER, &[Role::Reviewer], State::InReview),
            [Action::Approve, Action::Reject, Action::Comment]
        );
        assert_eq!(
            offered_to(OTHER, &[Role::SecurityOfficer], State::ChangesRequested),
            [Action::SignException, Action::Comment, Action::Decline]
        );
        assert_eq!(
            offered_to(AUTHOR, &[Role::Author], State::Withdrawn),
            [Action::Reopen]
        );
        assert!(offered_to(OTHER, &[Role::Reviewer], State::Rejected).is_empty());
        assert!(offered_to(OTHER, &[Role::Auditor], State::InReview).is_empty());
        // Someone else's draft: not the author's to submit.
        assert_eq!(
            allowed(Action::Submit, OTHER, &[Role::Author], AUTHOR, State::Draft),
            Err(Denied::NotAuthor("submit it"))
        );
        assert_eq!(
            allowed(
                Action::Approve,
                AUTHOR,
                &[Role::Reviewer],
                AUTHOR,
                State::InReview
            )
            .unwrap_err()
            .to_string(),
            "the author of a patch cannot approve it"
        );
    }

    #[test]
    fn sign_offs_are_offered_by_the_actors_standing() {
        let r2 = RevisionNumber(2);
        let standing = |vulnerability, signs: &[(UserId, i64, SignOffKind, bool)]| {
            Standing::of(
                OTHER,
                r2,
                vulnerability,
                signs.iter().map(|&(user, on, kind, withdrawn)| {
                    (user, RevisionNumber(on), kind, withdrawn)
                }),
            )
        };
        let reviewer = |standing: &Standing| {
            offered(OTHER, &[Role::Reviewer], AUTHOR, State::InReview, standing)
        };
        // Approved r2: approving again is not offered (and refused), withdrawing is.
        let approved = standing(false, &[(OTHER, 2, SignOffKind::Approve, false)]);
        assert_eq!(
            reviewer(&approved),
            [Action::Reject, Action::WithdrawSignOff, Action::Comment]
        );
        assert_eq!(
            applies(Action::Approve, &approved).map_err(|e| e.to_string()),
            Err("you have already approved revision 2; withdraw it first to sign off again".into())
        );
        // An approval of r1, a withdrawn one, or someone else's: nothing to withdraw.
        for signs in [
            [(OTHER, 1, SignOffKind::Approve, false)],
            [(OTHER, 2, SignOffKind::Approve, true)],
            [(AUTHOR, 2, SignOffKind::Reject, false)],
        ] {
            let s = standing(false, &signs);
            assert_eq!(
                reviewer(&s),
                [Action::Approve, Action::Reject, Action::Comment]
            );
            assert_eq!(
                applies(Action::WithdrawSignOff, &s),
                Err(Denied::NothingToWithdraw(r2))
            );
        }
        let rejected = standing(false, &[(OTHER, 2, SignOffKind::Reject, false)]);
        assert_eq!(
            reviewer(&rejected),
            [Action::Approve, Action::WithdrawSignOff, Action::Comment]
        );
        // Exceptions: none on a vulnerability; one per officer, whatever the revision.
        let officer = |standing: &Standing| {
            offered(
                OTHER,
                &[Role::SecurityOfficer],
                AUTHOR,
                State::InReview,
                standing,
            )
        };
        assert_eq!(
            officer(&standing(false, &[])),
            [Action::SignException, Action::Comment, Action::Decline]
        );
        assert_eq!(
            officer(&standing(true, &[])),
            [Action::Comment, Action::Decline]
        );
        assert_eq!(
            applies(Action::SignException, &standing(true, &[])),
            Err(Denied::NoException)
        );
        let signed = standing(false, &[(OTHER, 1, SignOffKind::Exception, false)]);
        assert_eq!(officer(&signed), [Action::Comment, Action::Decline]);
        let withdrawn = standing(false, &[(OTHER, 1, SignOffKind::Exception, true)]);
        assert_eq!(officer(&withdrawn)[0], Action::SignException);
    }

    #[test]
    fn reviewers_are_asked_for_by_the_author_or_a_release_manager_while_active() {
        let ask = |actor, roles: &[Role], state| may_request_reviewers(actor, roles, AUTHOR, state);
        assert_eq!(ask(AUTHOR, &[Role::Author], State::Draft), Ok(()));
        assert_eq!(ask(OTHER, &[Role::ReleaseManager], State::InReview), Ok(()));
        // Another author, a reviewer, or the author without the role: no.
        assert_eq!(
            ask(OTHER, &[Role::Author, Role::Reviewer], State::InReview),
            Err(Denied::NotRequester)
        );
        assert_eq!(
            ask(AUTHOR, &[Role::Reviewer], State::InReview),
            Err(Denied::NotRequester)
        );
        assert!(matches!(
            ask(AUTHOR, &[Role::Author], State::Rejected),
            Err(Denied::State { .. })
        ));
    }

    #[test]
    fn a_patch_awaits_a_reviewer_until_they_give_a_verdict_on_its_current_revision() {
        let standing = |signs: &[(UserId, i64, SignOffKind, bool)]| {
            Standing::of(
                OTHER,
                RevisionNumber(2),
                true,
                signs
                    .iter()
                    .map(|&(u, r, k, w)| (u, RevisionNumber(r), k, w)),
            )
        };
        let awaits = |roles: &[Role], state, st: &Standing| {
            awaits_review_by(OTHER, roles, AUTHOR, state, st)
        };
        let none = standing(&[]);
        assert!(awaits(&[Role::Reviewer], State::InReview, &none));
        assert!(!awaits(&[Role::Reviewer], State::Draft, &none));
        assert!(!awaits(&[Role::Auditor], State::InReview, &none));
        assert!(!awaits_review_by(
            AUTHOR,
            &[Role::Reviewer],
            AUTHOR,
            State::InReview,
            &none
        ));
        // A verdict on an older revision leaves the current one waiting; a withdrawn one
        // on the current revision too.
        let old = standing(&[(OTHER, 1, SignOffKind::Approve, false)]);
        assert!(awaits(&[Role::Reviewer], State::InReview, &old));
        let withdrawn = standing(&[(OTHER, 2, SignOffKind::Reject, true)]);
        assert!(awaits(
            &[Role::Reviewer],
            State::ChangesRequested,
            &withdrawn
        ));
        let done = standing(&[(OTHER, 2, SignOffKind::Reject, false)]);
        assert!(!awaits(&[Role::Reviewer], State::ChangesRequested, &done));
    }
}
