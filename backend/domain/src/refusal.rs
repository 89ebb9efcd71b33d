//! How a refused or failed request is answered, whichever front end answers it: the one
//! status table for the JSON API, the form posts and the pages' server functions.

/// The kinds of answer a request can get other than success.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// No session: sign in first.
    NotSignedIn,
    /// Signed in, but the rules do not allow it (role, four eyes, author).
    Forbidden,
    /// No such patch, revision, thread, user.
    NotFound,
    /// Allowed, but not in this state, or no longer current.
    Conflict,
    /// More than the limits accept.
    TooLarge,
    /// The request itself is malformed or incomplete.
    Invalid,
    /// The server failed (the store, a task): the detail is logged, never sent.
    Internal,
}

impl Refusal {
    /// Its HTTP status.
    pub const fn http_status(self) -> u16 {
        match self {
            Refusal::NotSignedIn => 401,
            Refusal::Forbidden => 403,
            Refusal::NotFound => 404,
            Refusal::Conflict => 409,
            Refusal::TooLarge => 413,
            Refusal::Invalid => 422,
            Refusal::Internal => 500,
        }
    }
}

impl crate::accounts::AccountError {
    /// How this refusal is answered.
    pub fn refusal(&self) -> Refusal {
        Refusal::Invalid
    }
}

impl crate::workflow::Denied {
    /// How this refusal is answered: a state or a standing that does not allow it is a
    /// conflict, an exception on a vulnerability invalid, the rest (role, author, four
    /// eyes) forbidden.
    pub fn refusal(&self) -> Refusal {
        use crate::workflow::Denied;
        match self {
            Denied::State { .. } | Denied::NothingToWithdraw(_) | Denied::AlreadySigned { .. } => {
                Refusal::Conflict
            }
            Denied::NoException => Refusal::Invalid,
            Denied::Role { .. }
            | Denied::OwnPatch(_)
            | Denied::NotAuthor(_)
            | Denied::GrantedByAuthor { .. }
            | Denied::NotRequester => Refusal::Forbidden,
        }
    }
}
