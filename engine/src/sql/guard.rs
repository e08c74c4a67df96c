//! What a user's statement may do: the authorizer and the time budget.
//!
//! SQLite asks the authorizer about every action while it prepares a
//! statement. durin refuses what would break its model — transaction
//! statements (an event is the transaction; `transaction_sync` nests),
//! `ATTACH` (another file), `load_extension`, its own reserved names, and
//! PRAGMAs outside Cloudflare's allowlist — and remembers why, so the
//! error says it instead of SQLite's bare "not authorized". durin's own
//! statements (`BEGIN`, `COMMIT`, savepoints, settings) run in internal
//! mode, which the authorizer lets through.
//!
//! The time budget: SQLite calls the progress handler every
//! [`PROGRESS_OPS`] virtual-machine steps; past the statement's deadline
//! it interrupts the statement, so one object cannot stall its shard.

use std::cell::RefCell;
use std::time::Instant;

use rusqlite::hooks::{AuthAction, AuthContext, Authorization};

/// Virtual-machine steps between two checks of the clock (a few
/// microseconds of work; reading the clock costs ~20 ns).
pub const PROGRESS_OPS: i32 = 1000;

/// Names durin keeps for itself (compared case-insensitively).
pub const RESERVED_PREFIX: &str = "_durin_";

/// Why transaction statements are refused.
pub const TRANSACTION_REFUSAL: &str = "BEGIN, COMMIT, ROLLBACK and SAVEPOINT are not allowed: \
     each event is a transaction; use transaction_sync for a nested one";

/// PRAGMAs a statement may run, with or without an argument.
const PRAGMAS_ALLOWED: &[&str] = &[
    "table_list",
    "table_info",
    "table_xinfo",
    "index_list",
    "index_info",
    "index_xinfo",
    "foreign_key_check",
    "foreign_key_list",
    "quick_check",
    "optimize",
    "data_version",
    "foreign_keys",
    "defer_foreign_keys",
    "case_sensitive_like",
    "ignore_check_constraints",
    "legacy_alter_table",
    "recursive_triggers",
    "reverse_unordered_selects",
];

/// PRAGMAs a statement may read but not set.
const PRAGMAS_READ_ONLY: &[&str] = &["page_size"];

#[derive(Default)]
struct Guard {
    internal: bool,
    refusal: Option<String>,
    deadline: Option<Instant>,
}

thread_local! {
    static GUARD: RefCell<Guard> = RefCell::new(Guard::default());
}

/// Runs `f` (durin's own statements) with the authorizer letting
/// everything through.
pub(crate) fn internal<R>(f: impl FnOnce() -> R) -> R {
    let was = GUARD.with(|g| std::mem::replace(&mut g.borrow_mut().internal, true));
    let r = f();
    GUARD.with(|g| g.borrow_mut().internal = was);
    r
}

/// Sets the deadline of the statements about to run (`None`: no budget
/// any more); a new deadline also forgets an earlier refusal.
pub(crate) fn set_deadline(deadline: Option<Instant>) {
    GUARD.with(|g| {
        let mut g = g.borrow_mut();
        if deadline.is_some() {
            g.refusal = None;
        }
        g.deadline = deadline;
    });
}

/// Why the authorizer refused the last statement, if it did.
pub(crate) fn take_refusal() -> Option<String> {
    GUARD.with(|g| g.borrow_mut().refusal.take())
}

/// The progress handler: `true` interrupts the statement.
pub(crate) fn past_deadline() -> bool {
    GUARD.with(|g| {
        let g = g.borrow();
        g.deadline.is_some_and(|d| Instant::now() >= d)
    })
}

/// The authorizer SQLite calls while preparing a statement.
pub(crate) fn authorize(ctx: AuthContext<'_>) -> Authorization {
    let refusal = GUARD.with(|g| {
        if g.borrow().internal {
            None
        } else {
            refusal_of(&ctx.action)
        }
    });
    match refusal {
        None => Authorization::Allow,
        Some(why) => {
            GUARD.with(|g| {
                g.borrow_mut().refusal.get_or_insert(why);
            });
            Authorization::Deny
        }
    }
}

fn reserved(name: &str) -> bool {
    name.len() >= RESERVED_PREFIX.len()
        && name.as_bytes()[..RESERVED_PREFIX.len()].eq_ignore_ascii_case(RESERVED_PREFIX.as_bytes())
}

/// Why `action` is refused, or `None` if it is allowed.
fn refusal_of(action: &AuthAction<'_>) -> Option<String> {
    match action {
        AuthAction::Transaction { .. } | AuthAction::Savepoint { .. } => {
            Some(TRANSACTION_REFUSAL.into())
        }
        AuthAction::Attach { .. } | AuthAction::Detach { .. } => {
            Some("ATTACH and DETACH are not allowed: an object has one database".into())
        }
        AuthAction::Function { function_name } => (function_name
            .eq_ignore_ascii_case("load_extension"))
        .then(|| "load_extension is not allowed".into()),
        AuthAction::Pragma {
            pragma_name,
            pragma_value,
        } => pragma_refusal(pragma_name, *pragma_value),
        _ => reserved_name_refusal(action),
    }
}

fn pragma_refusal(name: &str, value: Option<&str>) -> Option<String> {
    let name = name.to_ascii_lowercase();
    if PRAGMAS_ALLOWED.contains(&name.as_str()) {
        return None;
    }
    if PRAGMAS_READ_ONLY.contains(&name.as_str()) {
        return value.map(|_| format!("PRAGMA {name} may be read but not set"));
    }
    Some(format!("PRAGMA {name} is not allowed"))
}

fn reserved_name_refusal(action: &AuthAction<'_>) -> Option<String> {
    let names: [Option<&str>; 2] = match action {
        AuthAction::CreateIndex {
            index_name,
            table_name,
        }
        | AuthAction::CreateTempIndex {
            index_name,
            table_name,
        }
        | AuthAction::DropIndex {
            index_name,
            table_name,
        }
        | AuthAction::DropTempIndex {
            index_name,
            table_name,
        } => [Some(index_name), Some(table_name)],
        AuthAction::CreateTrigger {
            trigger_name,
            table_name,
        }
        | AuthAction::CreateTempTrigger {
            trigger_name,
            table_name,
        }
        | AuthAction::DropTrigger {
            trigger_name,
            table_name,
        }
        | AuthAction::DropTempTrigger {
            trigger_name,
            table_name,
        } => [Some(trigger_name), Some(table_name)],
        AuthAction::CreateTable { table_name }
        | AuthAction::CreateTempTable { table_name }
        | AuthAction::DropTable { table_name }
        | AuthAction::DropTempTable { table_name }
        | AuthAction::Delete { table_name }
        | AuthAction::Insert { table_name }
        | AuthAction::Read { table_name, .. }
        | AuthAction::Update { table_name, .. }
        | AuthAction::AlterTable { table_name, .. }
        | AuthAction::Analyze { table_name }
        | AuthAction::CreateVtable { table_name, .. }
        | AuthAction::DropVtable { table_name, .. } => [Some(table_name), None],
        AuthAction::CreateView { view_name }
        | AuthAction::CreateTempView { view_name }
        | AuthAction::DropView { view_name }
        | AuthAction::DropTempView { view_name } => [Some(view_name), None],
        _ => [None, None],
    };
    names.into_iter().flatten().find(|n| reserved(n)).map(|n| {
        format!("the name `{n}` is reserved: names starting with {RESERVED_PREFIX} are durin's")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowlisted_pragmas_pass_and_others_are_refused_with_a_reason() {
        assert!(pragma_refusal("table_info", Some("t")).is_none());
        assert!(pragma_refusal("FOREIGN_KEYS", Some("off")).is_none());
        assert!(pragma_refusal("page_size", None).is_none());
        let set = pragma_refusal("page_size", Some("8192")).expect("refused");
        assert!(set.contains("read but not set"), "{set}");
        let other = pragma_refusal("journal_mode", Some("wal")).expect("refused");
        assert!(other.contains("journal_mode"), "{other}");
    }

    #[test]
    fn reserved_names_are_found_in_any_case() {
        assert!(reserved("_durin_x"));
        assert!(reserved("_DURIN_meta"));
        assert!(!reserved("durin_x"));
        assert!(!reserved("_dur"));
    }
}
